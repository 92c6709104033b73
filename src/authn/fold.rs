//! A loose comparison key for account names: "could a directory consider these the same
//! name?".
//!
//! LDAP directories match names with rules like `caseIgnoreMatch`, prepared as RFC 4518 says
//! (characters mapped to nothing, NFKC, case folding, insignificant spaces), so `Bach`,
//! `BACH`, fullwidth `ｂａｃｈ` and `ba\u{AD}ch` (a soft hyphen) can all find the entry of
//! `bach`. The chain uses [`fold`] to let a static or htpasswd account shadow *every* such
//! spelling of its name in a backend that matches loosely (see
//! [`super::Authenticator::matches_loosely`]).
//!
//! The key only has to be at least as loose as the directory: two names that fold alike but
//! that the directory would tell apart are merely refused as "shadowed", which fails closed.
//! It is never used as an identity, so it need not be exact.

use icu_normalizer::ComposingNormalizerBorrowed;

/// The loose key of `account`: invisible characters dropped, NFKC, lower case (twice around
/// the normalisation, since each can undo the other), white space collapsed and trimmed.
pub fn fold(account: &str) -> String {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let visible: String = account.chars().filter(|c| !mapped_to_nothing(*c)).collect();
    let once = full_fold(&nfkc.normalize(&visible));
    let twice = full_fold(&nfkc.normalize(&once));
    let mut out = String::with_capacity(twice.len());
    for word in twice.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Lower case, plus the full case foldings lower-casing leaves out (`ß` → `ss`, final `ς` →
/// `σ`), so the key is at least as loose as a directory that folds fully.
fn full_fold(text: &str) -> String {
    text.to_lowercase().replace('ß', "ss").replace('ς', "σ")
}

/// Characters that RFC 3454 table B.1 (used by LDAP string preparation) maps to nothing, and
/// the other default-ignorable format characters a directory may drop: soft hyphen,
/// combining grapheme joiner, Mongolian vowel separator and variation selectors, zero-width
/// space and joiners, word joiner and invisible operators, byte-order mark.
fn mapped_to_nothing(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFC}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_a_directory_treats_alike_fold_alike() {
        for spelling in [
            "bach",
            "Bach",
            "BACH",
            "ｂａｃｈ",
            "ＢＡＣＨ",
            "ba\u{AD}ch",
            "b\u{200B}ach",
            "\u{FEFF}bach",
            "bac\u{2060}h",
        ] {
            assert_eq!(fold(spelling), "bach", "{spelling:?}");
        }
        // Insignificant spaces.
        assert_eq!(fold("  j  s\u{3000}bach "), "j s bach");
        // Compatibility forms and case together.
        assert_eq!(fold("ﬁsher"), fold("FISHER"));
        assert_eq!(fold("Schrödinger"), fold("schro\u{308}dinger"));
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("ΟΔΥΣΣΕΥΣ"), fold("οδυσσευς"));
    }

    #[test]
    fn different_names_stay_different() {
        assert_ne!(fold("bach"), fold("bach2"));
        assert_ne!(fold("bach"), fold("b.ach"));
        assert_ne!(fold("mozart"), fold("mozart_"));
    }
}
