//! Notification templates: an application sends
//! `{"template": "password_reset", "vars": {...}, "locale": "es"}` and cartero renders a
//! subject, a plain-text body and (optionally) an HTML body from it.
//!
//! # Where templates come from
//!
//! * **Built-ins** ([`BUILTIN_NAMES`], [`builtin`]): `user_invitation`, `password_reset`,
//!   `system_alert` and `test`, each written in English and Spanish with all three parts.
//! * **Per-project overrides**, stored by the API as a [`TemplateSet`] (JSON: `{"en": {...},
//!   "es": {...}}`). A project may override a built-in name or define its own. The API calls
//!   [`validate`] when a template is saved, so a broken template is refused at save time
//!   with the part, language and line of the first problem, instead of failing at send time.
//!
//! # Template language
//!
//! Every part is a [minijinja](https://docs.rs/minijinja) (Jinja2) template; the variables
//! are the members of the request's `vars` object. Rules:
//!
//! * **Escaping:** only the HTML part is auto-escaped (a variable holding `<b>` is inserted
//!   as `&lt;b&gt;`); the subject and the text part are inserted verbatim.
//! * **Missing variables render as empty strings**, so optional variables need no
//!   ceremony: `{% if expires_in %}…{% endif %}`. Lookups through a missing variable are
//!   empty too (`{{ order.id }}` with no `order`): the environment uses minijinja's
//!   `Chainable` undefined behaviour, the lenient default extended to attribute chains.
//!   A JSON `null` counts as missing (it does not print `none`). Operations that cannot
//!   work on a missing value (`{{ count + 1 }}`) fail; write `{{ count | default(0) + 1 }}`.
//! * **Whitespace:** `trim_blocks` and `lstrip_blocks` are on, so a line that holds only a
//!   `{% ... %}` tag leaves no blank line behind. This matters in the text part.
//! * **Subject:** rendered as one line — every run of CR/LF becomes a single space and the
//!   result is trimmed, so a variable cannot inject headers or break the subject.
//! * **Languages:** when the requested language is missing from a set, the other one is
//!   used.
//!
//! Each call to [`render`] or [`validate`] builds a fresh `minijinja::Environment`: templates
//! are small and rendered once per message, so nothing is cached and nothing is shared
//! between projects.
//!
//! # Validation
//!
//! [`validate`] compiles every part and renders it twice: with no variables at all (the
//! template must survive any missing variable, which is what rendering guarantees the
//! sender) and with sample values for every variable the part uses (so the branches behind
//! `{% if var %}` run too, catching an unknown filter inside them). In the second pass only
//! faults of the template itself count (unknown filter/test/function/method, wrong number
//! of arguments, includes): a sample value of the wrong type says nothing about the
//! template.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

/// The two languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Spanish.
    Es,
}

/// A template's source: three parts, each a minijinja template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateSource {
    /// The subject line; rendered without escaping and forced onto one line.
    pub subject: String,
    /// The plain-text body; rendered without escaping.
    pub text: String,
    /// The HTML body, if any; rendered with HTML auto-escaping.
    pub html: Option<String>,
}

/// A project's template as stored: per language sources (either may be missing; rendering
/// falls back to the other language).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateSet {
    /// The English version.
    pub en: Option<TemplateSource>,
    /// The Spanish version.
    pub es: Option<TemplateSource>,
}

/// A rendered message: what goes into the mail's `Subject`, `text/plain` and `text/html`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    /// One line, trimmed.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, when the template has an HTML part.
    pub html: Option<String>,
}

/// Why a template could not be found, validated or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No built-in or project template has this name.
    #[error("unknown template `{0}`")]
    Unknown(String),
    /// A template that does not compile or does not render: which part (subject/text/html),
    /// which language, the line (1-based, when known), and minijinja's reason.
    #[error("{lang} {part}{}: {reason}", line.map(|n| format!(", line {n}")).unwrap_or_default())]
    Invalid {
        /// `"en"` or `"es"` (`"en/es"` when the set has no language at all).
        lang: &'static str,
        /// `"subject"`, `"text"` or `"html"` (`"template"` when the set has no language).
        part: &'static str,
        /// 1-based line of the problem, when minijinja knows it.
        line: Option<usize>,
        /// minijinja's reason, e.g. `syntax error: unexpected end of input, expected end of
        /// block`.
        reason: String,
    },
    /// Rendering failed with the given variables (e.g. an operation on a value of the wrong
    /// type, or `vars` not being a JSON object).
    #[error("{lang} {part}: {reason}")]
    Render {
        /// `"en"` or `"es"`: the language actually rendered (after fallback).
        lang: &'static str,
        /// `"subject"`, `"text"`, `"html"`, or `"vars"` when `vars` is not an object.
        part: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// The names of the built-in templates, in the order they are documented.
pub const BUILTIN_NAMES: [&str; 4] = ["user_invitation", "password_reset", "system_alert", "test"];

/// The built-in template called `name`, in both languages, or `None` for another name.
///
/// Variables each one uses (those marked optional may be left out):
///
/// * `user_invitation`: `name`, `inviter`, `product`, `link`, `expires_in` (optional).
/// * `password_reset`: `name`, `product`, `link`, `expires_in` (optional).
/// * `system_alert`: `title`, `message`, `severity` (`info`/`warning`/`critical`),
///   `product`, `link` (optional), `time` (optional).
/// * `test`: `account`, `time`.
pub fn builtin(name: &str) -> Option<TemplateSet> {
    let (en, es) = match name {
        "user_invitation" => (invitation_en(), invitation_es()),
        "password_reset" => (reset_en(), reset_es()),
        "system_alert" => (alert_en(), alert_es()),
        "test" => (test_en(), test_es()),
        _ => return None,
    };
    Some(TemplateSet {
        en: Some(en),
        es: Some(es),
    })
}

/// Checks a set compiles AND renders with sample variables (undefined variables render as
/// empty strings, i.e. lenient, so a template using any variable name validates), returning
/// the first problem with its line.
///
/// Also refused: a set with no language, an empty subject or text, and an HTML part that is
/// present but empty (leave it out instead). See the module documentation for the two
/// rendering passes.
pub fn validate(set: &TemplateSet) -> Result<(), TemplateError> {
    if set.en.is_none() && set.es.is_none() {
        return Err(no_language());
    }
    let env = environment();
    let globals: BTreeSet<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    for (lang, source) in [(Lang::En, &set.en), (Lang::Es, &set.es)] {
        let Some(source) = source else { continue };
        for (part, text) in parts(source) {
            let Some(text) = text else { continue };
            if text.trim().is_empty() {
                let reason = match part {
                    Part::Html => "the html part is empty; leave it out instead".to_owned(),
                    _ => format!("the {} is empty", part.name()),
                };
                return Err(TemplateError::Invalid {
                    lang: lang_code(lang),
                    part: part.name(),
                    line: None,
                    reason,
                });
            }
            let template = env
                .template_from_named_str(template_name(lang, part), text)
                .map_err(|e| compile_error(lang, part, text, &e))?;
            template
                .render(Value::from(BTreeMap::<String, Value>::new()))
                .map_err(|e| invalid(lang, part, &e))?;
            let sample = sample_vars(&template.undeclared_variables(false), &globals);
            if let Err(e) = template.render(sample)
                && is_template_fault(e.kind())
            {
                return Err(invalid(lang, part, &e));
            }
        }
    }
    Ok(())
}

/// Renders `set` in `lang` (falling back to the other language when that one is absent)
/// with `vars` (a JSON object). HTML parts are auto-escaped (variables inserted into HTML
/// are escaped); subject and text are not escaped. Subject must come out as one line: CR/LF
/// in the rendered subject are replaced by spaces and it is trimmed.
///
/// Missing variables (and `null` ones) render as empty strings, lookups through them too
/// (minijinja's `Chainable` undefined behaviour). `vars` may be `null` (no variables);
/// anything else but an object is a [`TemplateError::Render`] with part `"vars"`.
/// A fault of the template itself (syntax, unknown filter, ...) is
/// [`TemplateError::Invalid`]; a failure that depends on the values is
/// [`TemplateError::Render`].
pub fn render(
    set: &TemplateSet,
    lang: Lang,
    vars: &serde_json::Value,
) -> Result<Rendered, TemplateError> {
    let (lang, source) = pick(set, lang).ok_or_else(no_language)?;
    let ctx = match vars {
        serde_json::Value::Object(_) => json_to_value(vars),
        serde_json::Value::Null => Value::from(BTreeMap::<String, Value>::new()),
        _ => {
            return Err(TemplateError::Render {
                lang: lang_code(lang),
                part: "vars",
                reason: "vars must be a JSON object".to_owned(),
            });
        }
    };
    let env = environment();
    let subject = render_part(&env, lang, Part::Subject, &source.subject, &ctx)?;
    let text = render_part(&env, lang, Part::Text, &source.text, &ctx)?;
    let html = match &source.html {
        Some(html) => Some(render_part(&env, lang, Part::Html, html, &ctx)?),
        None => None,
    };
    Ok(Rendered {
        subject: one_line(&subject),
        text,
        html,
    })
}

// ---------------------------------------------------------------------------------------
// Engine plumbing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "text",
            Part::Html => "html",
        }
    }
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "en",
        Lang::Es => "es",
    }
}

/// The name minijinja knows a part by; the `.html` suffix is what turns escaping on.
fn template_name(lang: Lang, part: Part) -> &'static str {
    match (lang, part) {
        (Lang::En, Part::Subject) => "en.subject",
        (Lang::En, Part::Text) => "en.text",
        (Lang::En, Part::Html) => "en.html",
        (Lang::Es, Part::Subject) => "es.subject",
        (Lang::Es, Part::Text) => "es.text",
        (Lang::Es, Part::Html) => "es.html",
    }
}

/// Instructions one render may execute.
const RENDER_FUEL: u64 = 200_000;

fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Project templates are user input: bound the work one render may do (huge loops and
    // repetitions run out of fuel and fail instead of tying up a worker).
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // `none` (a JSON null inside a list) prints as nothing, like a missing value. HTML is
    // escaped the way Jinja2/MarkupSafe does it (`& < > " '`), so links keep their slashes
    // instead of minijinja's `&#x2f;`.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Ok(());
        }
        if *state.auto_escape() == AutoEscape::Html && !value.is_safe() && !value.is_undefined() {
            return write_html_escaped(out, &value.to_string()).map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

fn write_html_escaped(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.write_str(&rest[..i])?;
        out.write_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        })?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)
}

fn parts(source: &TemplateSource) -> [(Part, Option<&str>); 3] {
    [
        (Part::Subject, Some(source.subject.as_str())),
        (Part::Text, Some(source.text.as_str())),
        (Part::Html, source.html.as_deref()),
    ]
}

fn pick(set: &TemplateSet, lang: Lang) -> Option<(Lang, &TemplateSource)> {
    let (first, second) = match lang {
        Lang::En => ((Lang::En, &set.en), (Lang::Es, &set.es)),
        Lang::Es => ((Lang::Es, &set.es), (Lang::En, &set.en)),
    };
    [first, second]
        .into_iter()
        .find_map(|(lang, source)| source.as_ref().map(|source| (lang, source)))
}

fn render_part<'s>(
    env: &Environment<'s>,
    lang: Lang,
    part: Part,
    source: &'s str,
    ctx: &Value,
) -> Result<String, TemplateError> {
    let template = env
        .template_from_named_str(template_name(lang, part), source)
        .map_err(|e| compile_error(lang, part, source, &e))?;
    template.render(ctx).map_err(|e| {
        if is_template_fault(e.kind()) {
            invalid(lang, part, &e)
        } else {
            TemplateError::Render {
                lang: lang_code(lang),
                part: part.name(),
                reason: reason(&e),
            }
        }
    })
}

/// Errors that are the template's fault whatever the variables hold. Everything else
/// (invalid operation, wrong type, undefined value...) depends on the data.
fn is_template_fault(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::SyntaxError
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod
            | ErrorKind::TooManyArguments
            | ErrorKind::MissingArgument
            | ErrorKind::BadEscape
            | ErrorKind::TemplateNotFound
            | ErrorKind::BadInclude
            | ErrorKind::InvalidDelimiter
    )
}

/// minijinja's message without the ` (in name:line)` suffix its `Display` adds.
fn reason(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn invalid(lang: Lang, part: Part, e: &minijinja::Error) -> TemplateError {
    TemplateError::Invalid {
        lang: lang_code(lang),
        part: part.name(),
        line: e.line(),
        reason: reason(e),
    }
}

/// A template that does not compile. For a block left open (`{% if %}` without
/// `{% endif %}`) minijinja reports the line where the last piece of text starts, which is
/// rarely where the mistake is; point at the innermost block tag that is never closed.
fn compile_error(lang: Lang, part: Part, source: &str, e: &minijinja::Error) -> TemplateError {
    let mut error = invalid(lang, part, e);
    if e.kind() == ErrorKind::SyntaxError
        && e.detail() == Some("unexpected end of input, expected end of block")
        && let Some((tag, line)) = unclosed_block(source)
        && let TemplateError::Invalid {
            line: l, reason, ..
        } = &mut error
    {
        *l = Some(line);
        reason.push_str(&format!(
            " (`{{% {tag} %}}` on line {line} is never closed)"
        ));
    }
    error
}

/// The innermost block tag of `source` that has no matching `end` tag, with its 1-based
/// line. A light scan of `{% ... %}` tags (skipping `{{ ... }}`, comments and raw blocks),
/// not a parser: `None` when it cannot tell.
fn unclosed_block(source: &str) -> Option<(&str, usize)> {
    const BLOCKS: [&str; 9] = [
        "if",
        "for",
        "macro",
        "call",
        "filter",
        "with",
        "autoescape",
        "block",
        "set",
    ];
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut pos = 0;
    let mut in_raw = false;
    while let Some(found) = source[pos..].find('{') {
        let start = pos + found;
        let closer = match source[start + 1..].chars().next() {
            Some('%') => "%}",
            Some('{') => "}}",
            Some('#') => "#}",
            _ => {
                pos = start + 1;
                continue;
            }
        };
        let end = start + 2 + source[start + 2..].find(closer)?;
        pos = end + 2;
        if closer != "%}" {
            continue;
        }
        let inner = source[start + 2..end]
            .trim_start_matches(['-', '+'])
            .trim_start();
        let word = inner
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let line = source[..start].matches('\n').count() + 1;
        if in_raw {
            if word == "endraw" {
                in_raw = false;
            }
            continue;
        }
        match word {
            "raw" => in_raw = true,
            // `{% set x = ... %}` is a statement; only `{% set x %}...{% endset %}` is a block.
            "set" if inner.contains('=') => {}
            w if BLOCKS.contains(&w) => open.push((w, line)),
            w if w.starts_with("end") => match open.last() {
                Some((tag, _)) if *tag == &w[3..] => {
                    open.pop();
                }
                _ => return None,
            },
            _ => {}
        }
    }
    if in_raw {
        return None;
    }
    open.pop()
}

fn no_language() -> TemplateError {
    TemplateError::Invalid {
        lang: "en/es",
        part: "template",
        line: None,
        reason: "the template has neither an English (en) nor a Spanish (es) version".to_owned(),
    }
}

/// JSON to a template value. `null` members of objects are dropped, so they behave exactly
/// like missing variables (empty, falsy) instead of printing `none`.
fn json_to_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(json_to_value).collect::<Vec<_>>()),
        Json::Object(members) => Value::from(
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

/// Sample values for validation: a realistic string for the built-ins' variables, `"sample"`
/// for any other name a part uses. Engine globals (`range`, `namespace`...) and loop/macro
/// names are left alone so they keep working.
fn sample_vars(names: &std::collections::HashSet<String>, globals: &BTreeSet<String>) -> Value {
    const RESERVED: [&str; 6] = ["loop", "self", "super", "caller", "varargs", "kwargs"];
    let vars: BTreeMap<String, Value> = names
        .iter()
        .filter(|name| !globals.contains(*name) && !RESERVED.contains(&name.as_str()))
        .map(|name| {
            let value = match name.as_str() {
                "name" => "Ana García",
                "inviter" => "Luis Pérez",
                "product" => "Acme",
                "link" => "https://example.com/accept?token=abc&lang=es",
                "expires_in" => "7 days",
                "title" => "Disk almost full",
                "message" => "Volume /var is at 95%.\nFree some space.",
                "severity" => "warning",
                "time" => "2026-01-01 12:00 UTC",
                "account" => "Main SMTP",
                _ => "sample",
            };
            (name.clone(), Value::from(value))
        })
        .collect();
    Value::from(vars)
}

/// Every run of CR/LF becomes one space; the result is trimmed.
fn one_line(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    let mut in_break = false;
    for c in subject.chars() {
        if c == '\r' || c == '\n' {
            if !in_break {
                out.push(' ');
            }
            in_break = true;
        } else {
            out.push(c);
            in_break = false;
        }
    }
    out.trim().to_owned()
}

// ---------------------------------------------------------------------------------------
// Built-in templates
// ---------------------------------------------------------------------------------------

fn source(subject: &str, text: &str, html: String) -> TemplateSource {
    TemplateSource {
        subject: subject.to_owned(),
        text: text.to_owned(),
        html: Some(html),
    }
}

/// The HTML frame shared by the built-ins: one centred 600px column of tables with inline
/// styles (what mail clients render reliably), readable as plain HTML when styles are off.
fn page(lang: &str, title: &str, body: &str, footer: &str) -> String {
    [
        "<!DOCTYPE html>\n<html lang=\"",
        lang,
        "\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
        title,
        "</title>\n</head>\n",
        "<body style=\"margin:0;padding:0;background-color:#f4f5f7;\">\n",
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"background-color:#f4f5f7;\">\n",
        "<tr><td align=\"center\" style=\"padding:24px 12px;\">\n",
        "<table role=\"presentation\" width=\"600\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"width:100%;max-width:600px;background-color:#ffffff;border:1px solid #e1e4e8;border-radius:6px;\">\n",
        "<tr><td style=\"padding:32px;font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;color:#1f2328;\">\n",
        body,
        "</td></tr>\n</table>\n",
        "<p style=\"max-width:600px;margin:16px auto 0;font-family:Arial,Helvetica,sans-serif;font-size:12px;line-height:1.5;color:#6a737d;\">",
        footer,
        "</p>\n</td></tr>\n</table>\n</body>\n</html>\n",
    ]
    .concat()
}

/// A call-to-action button followed by the raw link, for clients that hide buttons.
fn button(label: &str, fallback: &str) -> String {
    [
        "<p style=\"margin:24px 0;\"><a href=\"{{ link }}\" style=\"display:inline-block;padding:12px 24px;background-color:#2563eb;color:#ffffff;text-decoration:none;font-weight:bold;border-radius:4px;\">",
        label,
        "</a></p>\n<p style=\"margin:0 0 16px;font-size:13px;color:#57606a;\">",
        fallback,
        "<br>\n<a href=\"{{ link }}\" style=\"color:#2563eb;word-break:break-all;\">{{ link }}</a></p>\n",
    ]
    .concat()
}

const P: &str = "<p style=\"margin:0 0 16px;\">";
const SMALL: &str = "<p style=\"margin:0 0 16px;font-size:14px;color:#57606a;\">";

fn invitation_en() -> TemplateSource {
    let body = [
        P,
        "Hi{% if name %} {{ name }}{% endif %},</p>\n",
        P,
        "{% if inviter %}<strong>{{ inviter }}</strong> has invited you{% else %}You have been invited{% endif %} to join <strong>{{ product }}</strong>.</p>\n",
        &button(
            "Accept the invitation",
            "If the button doesn't work, copy this link into your browser:",
        ),
        "{% if expires_in %}\n",
        SMALL,
        "This invitation expires in {{ expires_in }}.</p>\n",
        "{% endif %}\n",
        SMALL,
        "If you weren't expecting this invitation, you can ignore this email.</p>\n",
    ]
    .concat();
    source(
        "{% if inviter %}{{ inviter }} invited you to {{ product }}{% else %}You're invited to {{ product }}{% endif %}",
        "Hi{% if name %} {{ name }}{% endif %},

{% if inviter %}{{ inviter }} has invited you{% else %}You have been invited{% endif %} to join {{ product }}.

Accept the invitation here:
{{ link }}

{% if expires_in %}
This invitation expires in {{ expires_in }}.

{% endif %}
If you weren't expecting this invitation, you can ignore this email.

— {{ product }}
",
        page(
            "en",
            "Invitation to {{ product }}",
            &body,
            "Sent by {{ product }}.",
        ),
    )
}

fn invitation_es() -> TemplateSource {
    let body = [
        P,
        "Hola{% if name %}, {{ name }}{% endif %}:</p>\n",
        P,
        "{% if inviter %}<strong>{{ inviter }}</strong> te ha invitado{% else %}Te han invitado{% endif %} a unirte a <strong>{{ product }}</strong>.</p>\n",
        &button(
            "Aceptar la invitación",
            "Si el botón no funciona, copia este enlace en tu navegador:",
        ),
        "{% if expires_in %}\n",
        SMALL,
        "La invitación caduca en {{ expires_in }}.</p>\n",
        "{% endif %}\n",
        SMALL,
        "Si no esperabas esta invitación, puedes ignorar este correo.</p>\n",
    ]
    .concat();
    source(
        "{% if inviter %}{{ inviter }} te ha invitado a {{ product }}{% else %}Te han invitado a {{ product }}{% endif %}",
        "Hola{% if name %}, {{ name }}{% endif %}:

{% if inviter %}{{ inviter }} te ha invitado{% else %}Te han invitado{% endif %} a unirte a {{ product }}.

Acepta la invitación en este enlace:
{{ link }}

{% if expires_in %}
La invitación caduca en {{ expires_in }}.

{% endif %}
Si no esperabas esta invitación, puedes ignorar este correo.

— {{ product }}
",
        page(
            "es",
            "Invitación a {{ product }}",
            &body,
            "Enviado por {{ product }}.",
        ),
    )
}

fn reset_en() -> TemplateSource {
    let body = [
        P,
        "Hi{% if name %} {{ name }}{% endif %},</p>\n",
        P,
        "We received a request to reset the password for your <strong>{{ product }}</strong> account. Use the button below to choose a new one.</p>\n",
        &button(
            "Reset password",
            "If the button doesn't work, copy this link into your browser:",
        ),
        "{% if expires_in %}\n",
        SMALL,
        "The link expires in {{ expires_in }}.</p>\n",
        "{% endif %}\n",
        SMALL,
        "If you didn't ask to reset your password, you can safely ignore this email: your password will not change.</p>\n",
    ]
    .concat();
    source(
        "Reset your {{ product }} password",
        "Hi{% if name %} {{ name }}{% endif %},

We received a request to reset the password for your {{ product }} account. To choose a new password, open this link:
{{ link }}

{% if expires_in %}
The link expires in {{ expires_in }}.

{% endif %}
If you didn't ask to reset your password, you can safely ignore this email: your password will not change.

— {{ product }}
",
        page(
            "en",
            "Reset your {{ product }} password",
            &body,
            "Sent by {{ product }}.",
        ),
    )
}

fn reset_es() -> TemplateSource {
    let body = [
        P,
        "Hola{% if name %}, {{ name }}{% endif %}:</p>\n",
        P,
        "Hemos recibido una solicitud para restablecer la contraseña de tu cuenta de <strong>{{ product }}</strong>. Usa el botón para elegir una nueva.</p>\n",
        &button(
            "Restablecer la contraseña",
            "Si el botón no funciona, copia este enlace en tu navegador:",
        ),
        "{% if expires_in %}\n",
        SMALL,
        "El enlace caduca en {{ expires_in }}.</p>\n",
        "{% endif %}\n",
        SMALL,
        "Si no has pedido restablecer tu contraseña, puedes ignorar este correo: tu contraseña no cambiará.</p>\n",
    ]
    .concat();
    source(
        "Restablecer tu contraseña de {{ product }}",
        "Hola{% if name %}, {{ name }}{% endif %}:

Hemos recibido una solicitud para restablecer la contraseña de tu cuenta de {{ product }}. Para elegir una contraseña nueva, abre este enlace:
{{ link }}

{% if expires_in %}
El enlace caduca en {{ expires_in }}.

{% endif %}
Si no has pedido restablecer tu contraseña, puedes ignorar este correo: tu contraseña no cambiará.

— {{ product }}
",
        page(
            "es",
            "Restablecer tu contraseña de {{ product }}",
            &body,
            "Enviado por {{ product }}.",
        ),
    )
}

/// The coloured badge of an alert; `label` is the language's severity label expression.
fn alert_body(label: &str, time_label: &str, details: &str) -> String {
    [
        "<p style=\"margin:0 0 16px;\"><span style=\"display:inline-block;padding:2px 10px;border-radius:12px;font-size:12px;font-weight:bold;letter-spacing:0.5px;color:#ffffff;background-color:",
        "{% if severity == 'critical' %}#b91c1c{% elif severity == 'warning' %}#b45309{% else %}#1d4ed8{% endif %}",
        ";\">",
        label,
        "</span></p>\n",
        "<h1 style=\"margin:0 0 16px;font-size:20px;line-height:1.3;\">{{ title }}</h1>\n",
        P,
        // One escaped line at a time, joined with <br>, so the message keeps its line breaks.
        "{% for line in message | string | lines %}{{ line }}{% if not loop.last %}<br>\n{% endif %}{% endfor %}</p>\n",
        "{% if time %}\n",
        SMALL,
        time_label,
        " {{ time }}</p>\n",
        "{% endif %}\n",
        "{% if link %}\n",
        "<p style=\"margin:24px 0;\"><a href=\"{{ link }}\" style=\"display:inline-block;padding:10px 20px;background-color:#2563eb;color:#ffffff;text-decoration:none;font-weight:bold;border-radius:4px;\">",
        details,
        "</a></p>\n",
        "{% endif %}\n",
    ]
    .concat()
}

const ALERT_LABEL_EN: &str = "{% if severity == 'critical' %}CRITICAL{% elif severity == 'warning' %}WARNING{% elif severity %}{{ severity | upper }}{% else %}INFO{% endif %}";
const ALERT_LABEL_ES: &str = "{% if severity == 'critical' %}CRÍTICO{% elif severity == 'warning' %}AVISO{% elif severity %}{{ severity | upper }}{% else %}INFO{% endif %}";

fn alert_en() -> TemplateSource {
    let subject = [
        "{% if product %}[{{ product }}] {% endif %}",
        ALERT_LABEL_EN,
        ": {{ title }}",
    ]
    .concat();
    let text = [
        ALERT_LABEL_EN,
        ": {{ title }}

{{ message }}

{% if time %}
Time: {{ time }}
{% endif %}
{% if link %}
Details: {{ link }}
{% endif %}

— This alert was sent by {{ product }}.
",
    ]
    .concat();
    let html = page(
        "en",
        "{{ title }}",
        &alert_body(ALERT_LABEL_EN, "Time:", "View details"),
        "This alert was sent by {{ product }}.",
    );
    TemplateSource {
        subject,
        text,
        html: Some(html),
    }
}

fn alert_es() -> TemplateSource {
    let subject = [
        "{% if product %}[{{ product }}] {% endif %}",
        ALERT_LABEL_ES,
        ": {{ title }}",
    ]
    .concat();
    let text = [
        ALERT_LABEL_ES,
        ": {{ title }}

{{ message }}

{% if time %}
Fecha y hora: {{ time }}
{% endif %}
{% if link %}
Detalles: {{ link }}
{% endif %}

— Esta alerta la ha enviado {{ product }}.
",
    ]
    .concat();
    let html = page(
        "es",
        "{{ title }}",
        &alert_body(ALERT_LABEL_ES, "Fecha y hora:", "Ver los detalles"),
        "Esta alerta la ha enviado {{ product }}.",
    );
    TemplateSource {
        subject,
        text,
        html: Some(html),
    }
}

fn test_en() -> TemplateSource {
    let body = [
        "<h1 style=\"margin:0 0 16px;font-size:20px;line-height:1.3;\">Test message</h1>\n",
        P,
        "This is a test message sent by cartero{% if account %} through the account <strong>{{ account }}</strong>{% endif %}.</p>\n",
        P,
        "If it reached you, the account's settings work: cartero connected to the mail server, signed in and sent this message.</p>\n",
        "{% if time %}\n",
        SMALL,
        "Sent at: {{ time }}</p>\n",
        "{% endif %}\n",
        SMALL,
        "No action is needed.</p>\n",
    ]
    .concat();
    source(
        "cartero test message{% if account %} ({{ account }}){% endif %}",
        "This is a test message sent by cartero{% if account %} through the account \"{{ account }}\"{% endif %}.

If it reached you, the account's settings work: cartero connected to the mail server, signed in and sent this message.

{% if time %}
Sent at: {{ time }}

{% endif %}
No action is needed.
",
        page("en", "cartero test message", &body, "Sent by cartero."),
    )
}

fn test_es() -> TemplateSource {
    let body = [
        "<h1 style=\"margin:0 0 16px;font-size:20px;line-height:1.3;\">Mensaje de prueba</h1>\n",
        P,
        "Este es un mensaje de prueba enviado por cartero{% if account %} con la cuenta <strong>{{ account }}</strong>{% endif %}.</p>\n",
        P,
        "Si este mensaje ha llegado, la configuración de la cuenta funciona: cartero se ha conectado al servidor de correo, ha iniciado sesión y ha enviado este mensaje.</p>\n",
        "{% if time %}\n",
        SMALL,
        "Enviado: {{ time }}</p>\n",
        "{% endif %}\n",
        SMALL,
        "No hace falta hacer nada.</p>\n",
    ]
    .concat();
    source(
        "Mensaje de prueba de cartero{% if account %} ({{ account }}){% endif %}",
        "Este es un mensaje de prueba enviado por cartero{% if account %} con la cuenta «{{ account }}»{% endif %}.

Si este mensaje ha llegado, la configuración de la cuenta funciona: cartero se ha conectado al servidor de correo, ha iniciado sesión y ha enviado este mensaje.

{% if time %}
Enviado: {{ time }}

{% endif %}
No hace falta hacer nada.
",
        page("es", "Mensaje de prueba de cartero", &body, "Enviado por cartero."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set_en(subject: &str, text: &str, html: Option<&str>) -> TemplateSet {
        TemplateSet {
            en: Some(TemplateSource {
                subject: subject.to_owned(),
                text: text.to_owned(),
                html: html.map(str::to_owned),
            }),
            es: None,
        }
    }

    fn sample(name: &str, lang: Lang) -> serde_json::Value {
        let es = lang == Lang::Es;
        match name {
            "user_invitation" => json!({
                "name": "Marta", "inviter": "Jorge", "product": "Facturas Pro",
                "link": "https://app.example.com/invite/xyz",
                "expires_in": if es { "7 días" } else { "7 days" },
            }),
            "password_reset" => json!({
                "name": "Marta", "product": "Facturas Pro",
                "link": "https://app.example.com/reset/abc",
                "expires_in": if es { "1 hora" } else { "1 hour" },
            }),
            "system_alert" => json!({
                "title": "Disco casi lleno", "message": "El volumen /var está al 95 %.",
                "severity": "critical", "product": "Monitor",
                "link": "https://monitor.example.com/a/1", "time": "2026-05-01 10:00 UTC",
            }),
            "test" => json!({ "account": "Correo principal", "time": "2026-05-01 10:00 UTC" }),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_builtin_validates_and_is_complete() {
        for name in BUILTIN_NAMES {
            let set = builtin(name).expect(name);
            validate(&set).unwrap_or_else(|e| panic!("{name}: {e}"));
            for source in [set.en.as_ref().unwrap(), set.es.as_ref().unwrap()] {
                assert!(source.html.is_some(), "{name} has no html");
            }
        }
    }

    #[test]
    fn builtins_render_in_both_languages_with_their_vars() {
        for name in BUILTIN_NAMES {
            let set = builtin(name).unwrap();
            for lang in [Lang::En, Lang::Es] {
                let vars = sample(name, lang);
                let out = render(&set, lang, &vars).unwrap_or_else(|e| panic!("{name}: {e}"));
                let html = out.html.as_deref().unwrap();
                assert!(!out.subject.contains('\n'), "{name}: {}", out.subject);
                assert!(!out.subject.is_empty());
                for (key, value) in vars.as_object().unwrap() {
                    let value = value.as_str().unwrap();
                    if key == "severity" {
                        continue; // shown as a localized label, checked below
                    }
                    assert!(out.text.contains(value), "{name} {lang:?} text lacks {key}");
                    assert!(html.contains(value), "{name} {lang:?} html lacks {key}");
                }
                assert!(!out.text.contains("{{") && !html.contains("{%"));
                assert!(!out.text.contains("none"), "{name}: {}", out.text);
                assert!(
                    !out.text.contains("\n\n\n"),
                    "{name}: blank lines\n{}",
                    out.text
                );
            }
        }
        let set = builtin("password_reset").unwrap();
        let es = render(&set, Lang::Es, &sample("password_reset", Lang::Es)).unwrap();
        assert_eq!(es.subject, "Restablecer tu contraseña de Facturas Pro");
        assert!(es.text.contains("Si no has pedido"));
        let en = render(&set, Lang::En, &sample("password_reset", Lang::En)).unwrap();
        assert_eq!(en.subject, "Reset your Facturas Pro password");
        assert!(en.text.contains("ignore this email"));

        let set = builtin("system_alert").unwrap();
        let es = render(&set, Lang::Es, &sample("system_alert", Lang::Es)).unwrap();
        assert_eq!(es.subject, "[Monitor] CRÍTICO: Disco casi lleno");
        let en = render(&set, Lang::En, &sample("system_alert", Lang::En)).unwrap();
        assert_eq!(en.subject, "[Monitor] CRITICAL: Disco casi lleno");

        let set = builtin("test").unwrap();
        let en = render(&set, Lang::En, &sample("test", Lang::En)).unwrap();
        assert!(en.text.contains("test message sent by cartero"));
        assert!(en.text.contains("settings work"));
    }

    #[test]
    fn optional_vars_can_be_left_out_or_null() {
        let set = builtin("password_reset").unwrap();
        let vars = json!({"name": null, "product": "Acme", "link": "https://x.test/r"});
        let out = render(&set, Lang::En, &vars).unwrap();
        assert!(out.text.starts_with("Hi,\n\nWe received"), "{}", out.text);
        assert!(!out.text.contains("expires"));
        assert!(!out.html.unwrap().contains("expires"));

        let set = builtin("system_alert").unwrap();
        let vars = json!({"title": "T", "message": "line 1\n<b>line 2</b>", "severity": "info", "product": "P"});
        let out = render(&set, Lang::Es, &vars).unwrap();
        assert_eq!(out.subject, "[P] INFO: T");
        assert!(!out.text.contains("Detalles") && !out.text.contains("Fecha"));
        let html = out.html.unwrap();
        assert!(
            html.contains("line 1<br>\n&lt;b&gt;line 2&lt;/b&gt;"),
            "{html}"
        );
        assert!(!html.contains("Ver los detalles"));
    }

    #[test]
    fn html_is_escaped_but_text_and_subject_are_not() {
        let set = set_en(
            "Hi {{ name }}",
            "Hi {{ name }}",
            Some("<p>Hi {{ name }}</p><a href=\"{{ link }}\">x</a>"),
        );
        let vars = json!({"name": "<script>alert(1)</script>", "link": "https://x.test/?a=1&b=2"});
        let out = render(&set, Lang::En, &vars).unwrap();
        assert_eq!(out.text, "Hi <script>alert(1)</script>");
        assert_eq!(out.subject, "Hi <script>alert(1)</script>");
        let html = out.html.unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            html.contains("href=\"https://x.test/?a=1&amp;b=2\""),
            "{html}"
        );
    }

    #[test]
    fn subject_comes_out_on_one_line() {
        let set = set_en("  Hello {{ name }}!\n", "t", None);
        let vars = json!({"name": "Ana\r\nBcc: evil@example.com\nX"});
        let out = render(&set, Lang::En, &vars).unwrap();
        assert_eq!(out.subject, "Hello Ana Bcc: evil@example.com X!");
        assert_eq!(out.html, None);
    }

    #[test]
    fn unclosed_if_is_invalid_with_its_line() {
        let set = TemplateSet {
            en: builtin("test").unwrap().en,
            es: Some(TemplateSource {
                subject: "Hola".to_owned(),
                text: "Hola\n\n{% if x %}\nalgo\nmás\n".to_owned(),
                html: None,
            }),
        };
        let err = validate(&set).unwrap_err();
        match &err {
            TemplateError::Invalid {
                lang,
                part,
                line,
                reason,
            } => {
                assert_eq!((*lang, *part, *line), ("es", "text", Some(3)));
                assert!(reason.starts_with("syntax error"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().starts_with("es text, line 3: syntax error"),
            "{err}"
        );
        // Rendering a stored broken template says the same.
        assert_eq!(render(&set, Lang::Es, &json!({})).unwrap_err(), err);
    }

    #[test]
    fn unknown_filter_is_invalid_with_its_line() {
        let set = set_en(
            "S",
            "T",
            Some("<p>a</p>\n\n\n<p>{{ x | nosuchfilter }}</p>"),
        );
        match validate(&set).unwrap_err() {
            TemplateError::Invalid {
                lang,
                part,
                line,
                reason,
            } => {
                assert_eq!((lang, part, line), ("en", "html", Some(4)));
                assert!(reason.contains("nosuchfilter"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Hidden behind an `if`: the sample-value pass still reaches it.
        let set = set_en(
            "S",
            "a\n{% if link %}\n{{ link | nosuchfilter }}\n{% endif %}",
            None,
        );
        assert!(matches!(
            validate(&set),
            Err(TemplateError::Invalid {
                part: "text",
                line: Some(3),
                ..
            })
        ));
    }

    #[test]
    fn any_variable_name_validates() {
        let set = set_en(
            "{{ order.id }} {{ whatever }}",
            "{% for item in items %}{{ item.name }} x{{ item.qty }}\n{% endfor %}{{ a.b.c | upper }}",
            Some("<p>{{ customer.address.city }}</p>"),
        );
        validate(&set).unwrap();
        let out = render(&set, Lang::En, &json!({})).unwrap();
        assert_eq!(out.subject, "");
        let vars = json!({"order": {"id": 42}, "items": [{"name": "Pen", "qty": 2}]});
        let out = render(&set, Lang::En, &vars).unwrap();
        assert_eq!(out.subject, "42");
        assert_eq!(out.text, "Pen x2\n");
    }

    #[test]
    fn templates_that_break_on_missing_vars_or_empty_parts_are_refused() {
        let set = set_en("S", "{{ count + 1 }}", None);
        assert!(matches!(
            validate(&set),
            Err(TemplateError::Invalid {
                part: "text",
                line: Some(1),
                ..
            })
        ));
        validate(&set_en("S", "{{ count | default(0) + 1 }}", None)).unwrap();
        // At send time, a type problem is a Render error, not Invalid.
        let err = render(&set, Lang::En, &json!({"count": "x"})).unwrap_err();
        assert!(
            matches!(
                err,
                TemplateError::Render {
                    lang: "en",
                    part: "text",
                    ..
                }
            ),
            "{err:?}"
        );

        assert!(matches!(
            validate(&set_en(" ", "T", None)),
            Err(TemplateError::Invalid {
                part: "subject",
                line: None,
                ..
            })
        ));
        assert!(matches!(
            validate(&set_en("S", "T", Some(""))),
            Err(TemplateError::Invalid { part: "html", .. })
        ));
        let empty = TemplateSet { en: None, es: None };
        assert!(matches!(
            validate(&empty),
            Err(TemplateError::Invalid { .. })
        ));
        assert!(render(&empty, Lang::En, &json!({})).is_err());
    }

    #[test]
    fn vars_must_be_an_object_or_null() {
        let set = set_en("Hi{{ name }}", "T", None);
        assert_eq!(render(&set, Lang::En, &json!(null)).unwrap().subject, "Hi");
        assert!(matches!(
            render(&set, Lang::En, &json!(["x"])),
            Err(TemplateError::Render { part: "vars", .. })
        ));
    }

    #[test]
    fn missing_language_falls_back_to_the_other() {
        let set = set_en("Hello {{ name }}", "Body", None);
        let out = render(&set, Lang::Es, &json!({"name": "Ana"})).unwrap();
        assert_eq!(out.subject, "Hello Ana");
        let only_es = TemplateSet {
            en: None,
            es: builtin("test").unwrap().es,
        };
        let out = render(&only_es, Lang::En, &json!({"account": "X"})).unwrap();
        assert!(out.subject.starts_with("Mensaje de prueba"));
        // The error names the language actually rendered.
        let broken = set_en("{{ 1 + }}", "T", None);
        assert!(matches!(
            render(&broken, Lang::Es, &json!({})),
            Err(TemplateError::Invalid {
                lang: "en",
                part: "subject",
                ..
            })
        ));
    }

    #[test]
    fn an_unclosed_block_is_reported_where_it_opens() {
        assert_eq!(unclosed_block("{% if a %}\nx\n{{ y }}\nz"), Some(("if", 1)));
        assert_eq!(
            unclosed_block("{% if a %}\n{%- for x in y -%}\n{% endfor %}\n{# {% if %} #}\n"),
            Some(("if", 1))
        );
        assert_eq!(
            unclosed_block("a\n{% for x in y %}\n{% if x %}{% endif %}\n"),
            Some(("for", 2))
        );
        assert_eq!(
            unclosed_block("{% set x = 1 %}{% raw %}{% if %}{% endraw %}"),
            None
        );
        assert_eq!(unclosed_block("{% if a %}{% endif %}"), None);

        let set = set_en("S", "a\n{% for i in items %}\n{{ i }}\n{{ i }}\n", None);
        let err = validate(&set).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Invalid { part: "text", line: Some(2), reason, .. }
                if reason.contains("`{% for %}` on line 2 is never closed")),
            "{err:?}"
        );
        // Other syntax errors keep minijinja's own line.
        let set = set_en("S", "a\n\n{% endif %}\n", None);
        assert!(matches!(
            validate(&set),
            Err(TemplateError::Invalid { line: Some(3), .. })
        ));
    }

    #[test]
    fn unknown_builtin_is_none() {
        assert_eq!(builtin("nope"), None);
        assert_eq!(builtin(""), None);
    }

    #[test]
    fn template_set_round_trips_as_json() {
        let set = builtin("user_invitation").unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<TemplateSet>(&json).unwrap(), set);
    }
}
