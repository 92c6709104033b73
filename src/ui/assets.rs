//! The UI's one stylesheet and one small script, compiled into the binary and served under
//! `static/`, so pages need no inline style or script (the Content-Security-Policy forbids
//! both) and nothing is fetched from anywhere else. Plain CSS, no framework: a single column
//! that works from phone width up, system fonts, and nothing whose meaning is carried by
//! colour alone. The script only adds copy buttons; every page works without it.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// `portcullis-<first 12 hex digits of the content's SHA-256>.<ext>`: the URL changes exactly
/// when the content does, so it can be cached — and, unlike a version number, it tells an
/// anonymous visitor nothing about which release runs.
fn content_name(content: &str, ext: &str) -> String {
    let hex = format!("{:x}", Sha256::digest(content.as_bytes()));
    format!("portcullis-{}.{ext}", &hex[..12])
}

static STYLESHEET_NAME: LazyLock<String> = LazyLock::new(|| content_name(CSS, "css"));
static SCRIPT_NAME: LazyLock<String> = LazyLock::new(|| content_name(SCRIPT, "js"));

/// The stylesheet's file name under `<ui.path>static/`.
pub fn stylesheet() -> &'static str {
    STYLESHEET_NAME.as_str()
}

/// The script's file name under `<ui.path>static/`.
pub fn script() -> &'static str {
    SCRIPT_NAME.as_str()
}

/// Copy buttons, added by the script itself next to every `[data-copy]` element, so without
/// the script there is no button that does nothing (the commands stay selectable with one
/// click: `user-select: all`). No inline handlers, no `eval`, nothing fetched.
pub const SCRIPT: &str = r#"'use strict';
(function () {
  function copied(button, ok) {
    button.textContent = ok ? 'Copied' : 'Select and copy';
    button.setAttribute('data-state', ok ? 'ok' : 'failed');
    setTimeout(function () { button.textContent = 'Copy'; button.removeAttribute('data-state'); }, 1500);
  }
  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  document.querySelectorAll('[data-copy]').forEach(function (el) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy: ' + el.textContent);
    button.addEventListener('click', function () {
      var text = el.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { copied(button, true); },
          function () { select(el); copied(button, false); });
      } else {
        select(el);
        copied(button, false);
      }
    });
    el.insertAdjacentElement('afterend', button);
  });
})();
"#;

/// The icon's file name under `<ui.path>static/` (browsers ask for `/favicon.ico` otherwise,
/// which is the registry's business, not ours).
pub const ICON: &str = "icon.svg";

/// A portcullis: a gate with a grid, in a square; two colours, no text.
pub const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0a58ca"/><path d="M6 28V10a10 6 0 0 1 20 0v18" fill="none" stroke="#fff" stroke-width="2.5"/><path d="M11 10v18M16 8v20M21 10v18M7 15h18M7 21h18" stroke="#fff" stroke-width="2"/></svg>"##;

/// The stylesheet.
pub const CSS: &str = r#"
:root {
  --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --panel: #f6f8fa; --line: #d0d7de;
  --accent: #0a58ca; --bad: #a40e26; --good: #116329;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  font-size: 16px; line-height: 1.45; color: var(--fg); background: var(--bg);
}
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9da7b3; --bg: #0d1117; --panel: #161b22; --line: #30363d;
          --accent: #6ea8fe; --bad: #ff8182; --good: #56d364; }
}
* { box-sizing: border-box; }
body { margin: 0; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, textarea:focus-visible {
  outline: 3px solid var(--accent); outline-offset: 2px;
}
header.top {
  display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem;
  padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel);
}
header.top .brand { font-weight: 700; font-size: 1.1rem; color: var(--fg); text-decoration: none; }
header.top nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; flex: 1; }
header.top .who { margin-left: auto; display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
header.top form { margin: 0; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
p.lead { color: var(--muted); margin-top: -.5rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .9em; }
input[type=text], input[type=password], input[type=search], textarea {
  font: inherit; width: 100%; padding: .5rem .6rem; border: 1px solid var(--line);
  border-radius: 6px; background: var(--bg); color: var(--fg);
}
textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; min-height: 5.5rem; }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
.hint { color: var(--muted); font-size: .9rem; font-weight: 400; }
button, .button {
  font: inherit; cursor: pointer; padding: .45rem 1rem; border-radius: 6px;
  border: 1px solid var(--accent); background: var(--accent); color: var(--bg); font-weight: 600;
  text-decoration: none; display: inline-block;
}
button.link { background: none; color: var(--accent); border-color: var(--line); padding: .25rem .7rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 1rem; margin: 0 0 1rem; background: var(--bg); }
.login { max-width: 24rem; margin: 3rem auto; }
.login button { margin-top: 1rem; width: 100%; }
ul.keys { list-style: none; padding: 0; margin: 0; }
ul.keys li { padding: .5rem 0; border-top: 1px solid var(--line); overflow-wrap: anywhere; }
ul.keys .meta { color: var(--muted); font-size: .9rem; }
form.inline { display: inline; margin-left: .5rem; }
.login a.sso { margin-top: .25rem; width: 100%; text-align: center; box-sizing: border-box; }
.login p.or { text-align: center; color: var(--muted); margin: 1rem 0 .5rem; }
.notice { border: 1px solid var(--line); border-left: 6px solid var(--bad); padding: .6rem .8rem; border-radius: 6px; margin: 0 0 1rem; background: var(--panel); }
.notice.ok { border-left-color: var(--good); }
.notice, ul.doomed, p.digest { overflow-wrap: anywhere; }
.notice strong { margin-right: .35rem; }
form.search { display: flex; gap: .5rem; margin: 0 0 1rem; }
form.search input { flex: 1; }
ul.repos { list-style: none; padding: 0; margin: 0; border: 1px solid var(--line); border-radius: 8px; }
ul.repos li { border-top: 1px solid var(--line); }
ul.repos li:first-child { border-top: none; }
ul.repos a { display: block; padding: .6rem .9rem; text-decoration: none; overflow-wrap: anywhere; }
ul.repos a:hover { background: var(--panel); text-decoration: underline; }
.count { color: var(--muted); margin: 0 0 .75rem; }
nav.pages { display: flex; gap: .75rem; align-items: center; justify-content: space-between; margin: 1rem 0; flex-wrap: wrap; }
nav.pages .disabled { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; min-width: 0; }
.digest { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { font-weight: 600; }
.cmd { display: block; background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
       padding: .5rem .6rem; margin: .35rem 0; white-space: pre-wrap; overflow-wrap: anywhere; user-select: all; }
.cmds { margin-top: .75rem; }
.cmds p { margin: .5rem 0 0; color: var(--muted); font-size: .9rem; }
.tag-title h2 code { font-size: 1.15rem; }
.tag-title { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: baseline; }
.badge { border: 1px solid var(--line); border-radius: 999px; padding: 0 .5rem; font-size: .85rem; color: var(--muted); }
.granted-none { font-weight: 700; }
.cmd + .copy { margin: 0 0 .5rem; padding: .15rem .7rem; font-size: .85rem; background: none; color: var(--accent); border-color: var(--line); }
.copy[data-state=ok] { border-color: var(--good); color: var(--good); }
.copy[data-state=failed] { border-color: var(--bad); color: var(--bad); }
.notice.ok strong { color: var(--good); }
ul.repos li { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; }
ul.repos li a { flex: 1 1 12rem; }
ul.repos .meta { color: var(--muted); font-size: .9rem; padding: 0 .9rem .6rem; }
nav.sort { color: var(--muted); margin: 0 0 .75rem; }
nav.sort strong { color: var(--fg); }
.actions { display: flex; gap: .75rem; flex-wrap: wrap; align-items: center; margin-top: .75rem; }
button.danger, .button.danger { background: var(--bad); border-color: var(--bad); color: var(--bg); }
a.danger { color: var(--bad); }
table.layers td.num, table.layers th.num { text-align: right; white-space: nowrap; }
.history td.cmdline { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; white-space: pre-wrap; }
details.platform { margin: 0 0 1rem; }
details.platform summary { cursor: pointer; font-weight: 600; }
footer { color: var(--muted); font-size: .85rem; text-align: center; padding: 2rem 1rem; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 40rem) {
  main { padding: .75rem; }
  h1 { font-size: 1.3rem; }
  dl.facts { grid-template-columns: 1fr; gap: 0; }
  dl.facts dd { margin-bottom: .4rem; }
  header.top .who { margin-left: 0; }
  table.stack thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.stack tr { display: block; border-bottom: 1px solid var(--line); padding: .4rem 0; }
  table.stack td { display: block; border: none; padding: .1rem 0; }
  table.stack td::before { content: attr(data-label) ": "; color: var(--muted); }
}
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn stylesheet_is_self_contained() {
        // Nothing fetched from elsewhere: no url(), no @import.
        assert!(!super::CSS.contains("url("));
        assert!(!super::CSS.contains("@import"));
        assert!(super::stylesheet().ends_with(".css"));
        assert!(super::script().ends_with(".js"));
        assert!(!super::stylesheet().contains(env!("CARGO_PKG_VERSION")));
        // The script fetches nothing and evaluates nothing.
        for banned in [
            "fetch(",
            "XMLHttpRequest",
            "eval(",
            "innerHTML",
            "Function(",
        ] {
            assert!(!super::SCRIPT.contains(banned), "{banned}");
        }
    }
}
