//! The `Accept` header of a request to a built-in JSON endpoint, judged as CCF judges it: an
//! entry that is not `type/subtype` (or whose `q=` is not a number) is a 400, a header none of
//! whose entries admits `application/json` is a 406, and no header (or an empty one) admits it.

/// Why an `Accept` header refuses a JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400 `InvalidHeaderValue`.
    Malformed(String),
    /// 406 `UnsupportedContentType`.
    NotAcceptable(String),
}

/// Whether a JSON answer may be given to a request with this `Accept` header.
pub fn admits_json(header: Option<&str>) -> Result<(), Refusal> {
    let Some(header) = header else { return Ok(()) };
    let compact: String = header.chars().filter(|c| *c != ' ').collect();
    if compact.is_empty() {
        return Ok(());
    }
    let mut admitted = false;
    for entry in compact.split(',') {
        let (types, q) = entry.split_once(";q=").unwrap_or((entry, ""));
        let (kind, subtype) = types.split_once('/').unwrap_or((types, ""));
        if kind.is_empty() || subtype.is_empty() {
            return Err(Refusal::Malformed(format!("Entry in Accept header is not a valid MIME type: {entry}")));
        }
        if !q.is_empty() && q.parse::<f32>().is_err() {
            return Err(Refusal::Malformed(format!("Could not parse q-factor from MIME type in Accept header: {entry}")));
        }
        admitted |= matches!(kind, "*" | "application") && matches!(subtype, "*" | "json");
    }
    if admitted {
        Ok(())
    } else {
        Err(Refusal::NotAcceptable(format!(
            "No supported content type in accept header: {header}\nOnly application/json is currently supported"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_as_ccf_judges_them() {
        let ok = [
            None,
            Some(""),
            Some("*/*"),
            Some("application/*"),
            Some("application/json"),
            Some("text/html;q=0.9,image/jpeg;video/mpeg;q=0.8,*/*;q=0.1"),
            Some("text/html, application/json;q=0.5"),
            // A wildcard type with the right subtype: CCF admits it, and so do we.
            Some("*/json;q=1"),
        ];
        for h in ok {
            assert_eq!(admits_json(h), Ok(()), "{h:?}");
        }
        for h in ["text/html", "text/html;q=0.9,image/jpeg;video/mpeg;q=0.8", "application/cbor"] {
            assert!(matches!(admits_json(Some(h)), Err(Refusal::NotAcceptable(_))), "{h}");
        }
        for h in ["nonsense", "application/", "/json", "application/json;q=high"] {
            assert!(matches!(admits_json(Some(h)), Err(Refusal::Malformed(_))), "{h}");
        }
    }
}
