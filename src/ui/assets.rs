//! The UI's one stylesheet, compiled into the binary and served under `static/`, so pages
//! need no inline style (the Content-Security-Policy forbids it) and nothing is fetched from
//! anywhere else. Plain CSS, no framework: a single column that works from phone width up,
//! system fonts, and nothing whose meaning is carried by colour alone.

/// The stylesheet's file name under `<ui.path>static/`; the version in it changes the URL
/// whenever a release may have changed the content, so it can be cached.
pub const STYLESHEET: &str = concat!("portcullis-", env!("CARGO_PKG_VERSION"), ".css");

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
.notice { border: 1px solid var(--line); border-left: 6px solid var(--bad); padding: .6rem .8rem; border-radius: 6px; margin: 0 0 1rem; background: var(--panel); }
.notice.ok { border-left-color: var(--good); }
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
        assert!(super::STYLESHEET.ends_with(".css"));
    }
}
