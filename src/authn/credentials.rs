//! The `Authorization` header, parsed without trusting it: Basic (RFC 7617) or Bearer.

use base64::Engine;

/// What a request presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Basic base64(account:password)`.
    Basic {
        /// The login name.
        account: String,
        /// The password, never logged.
        password: String,
    },
    /// `Bearer <token>`, never logged.
    Bearer(String),
}

// Hand-written so that a stray `{:?}` in a log line can never print a password or token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { account, .. } => write!(f, "Basic({account:?}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Why an `Authorization` header could not be read. Answered with a 401, like a wrong password,
/// but not counted as a failed login (clients do not send these by mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A scheme other than Basic or Bearer.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// Not base64, not UTF-8, or no `:`.
    #[error("malformed Basic credentials")]
    MalformedBasic,
    /// An empty or non-token Bearer value.
    #[error("malformed Bearer token")]
    MalformedBearer,
}

/// Longest header value we decode; anything longer is not a credential.
const MAX_LEN: usize = 8 * 1024;

/// Parses an `Authorization` header value (`None` when the header is absent).
pub fn parse(value: Option<&[u8]>) -> Result<Credentials, CredentialsError> {
    let Some(value) = value else {
        return Ok(Credentials::None);
    };
    if value.len() > MAX_LEN {
        return Err(CredentialsError::UnsupportedScheme);
    }
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    let rest = trim(rest);
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| CredentialsError::MalformedBasic)?;
        let text = String::from_utf8(decoded).map_err(|_| CredentialsError::MalformedBasic)?;
        let (account, password) = text
            .split_once(':')
            .ok_or(CredentialsError::MalformedBasic)?;
        if account.chars().any(char::is_control) {
            return Err(CredentialsError::MalformedBasic);
        }
        Ok(Credentials::Basic {
            account: account.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        // RFC 6750 token68 characters; JWTs use a subset.
        let ok = !rest.is_empty()
            && rest.iter().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
            });
        if !ok {
            return Err(CredentialsError::MalformedBearer);
        }
        Ok(Credentials::Bearer(
            String::from_utf8(rest.to_vec()).map_err(|_| CredentialsError::MalformedBearer)?,
        ))
    } else {
        Err(CredentialsError::UnsupportedScheme)
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    #[test]
    fn parses_basic_and_bearer() {
        assert_eq!(parse(None), Ok(Credentials::None));
        assert_eq!(
            parse(Some(&basic("alice:pa:ss"))),
            Ok(Credentials::Basic {
                account: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            parse(Some(b"bAsIc   YTpi")),
            Ok(Credentials::Basic {
                account: "a".into(),
                password: "b".into()
            })
        );
        assert_eq!(
            parse(Some(b"Bearer abc.def.ghi")),
            Ok(Credentials::Bearer("abc.def.ghi".into()))
        );
        assert_eq!(
            parse(Some(&basic(":"))),
            Ok(Credentials::Basic {
                account: "".into(),
                password: "".into()
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            parse(Some(b"Digest x")),
            Err(CredentialsError::UnsupportedScheme)
        );
        assert_eq!(parse(Some(b"")), Err(CredentialsError::UnsupportedScheme));
        assert_eq!(
            parse(Some(b"Basic !!!")),
            Err(CredentialsError::MalformedBasic)
        );
        assert_eq!(
            parse(Some(&basic("nocolon"))),
            Err(CredentialsError::MalformedBasic)
        );
        assert_eq!(
            parse(Some(&basic("a\nb:c"))),
            Err(CredentialsError::MalformedBasic)
        );
        assert_eq!(
            parse(Some(b"Basic /w==")),
            Err(CredentialsError::MalformedBasic)
        );
        assert_eq!(
            parse(Some(b"Bearer")),
            Err(CredentialsError::MalformedBearer)
        );
        assert_eq!(
            parse(Some(b"Bearer a b")),
            Err(CredentialsError::MalformedBearer)
        );
        assert_eq!(
            parse(Some(&vec![b'a'; MAX_LEN + 1])),
            Err(CredentialsError::UnsupportedScheme)
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Basic {
            account: "a".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("tok".into())).contains("tok"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(Some(&v));
        }
    }
}
