//! What a transaction the app ran was given and drew, so that its handler can run again on the
//! same inputs (issue 23, replay): the request as the handler saw it, its body, the time and
//! random values it drew, and what it answered (status and a digest of the body, to tell
//! whether a replay answers the same). The node seals the encoded bytes under the ledger
//! secret into the transaction's ledger entry; `consort replay` reads them back.

use serde::{Deserialize, Serialize};

use crate::engine::runtime::{JsRequest, JsResponse};
use crate::engine::sources::Draws;

/// The encoding's version, first in every record.
const RECORD_VERSION: u8 = 1;

/// A transaction's inputs, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedInputs {
    pub version: u8,
    /// Method, path, query, headers, route parameters and caller, as the handler saw them (the
    /// body is beside it: a `JsRequest` serialises without its body and historical state).
    pub request: JsRequest,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub draws: Draws,
    pub response: ResponseSummary,
}

/// What the handler answered: enough to say whether another run answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseSummary {
    pub status: u16,
    /// BLAKE3 of the response body.
    pub body_digest: [u8; 32],
}

impl ResponseSummary {
    pub fn of(response: &JsResponse) -> ResponseSummary {
        ResponseSummary { status: response.status, body_digest: *blake3::hash(&response.body).as_bytes() }
    }
}

/// [`RecordedInputs`] over borrowed fields: what the node encodes on each app transaction,
/// without copying the request (the fields `JsRequest` serialises, in its order, with the caller
/// the record keeps, so it decodes as `RecordedInputs`).
#[derive(Serialize)]
struct RecordView<'a> {
    version: u8,
    request: RequestView<'a>,
    #[serde(with = "serde_bytes")]
    body: &'a [u8],
    draws: &'a Draws,
    response: ResponseSummary,
}

#[derive(Serialize)]
struct RequestView<'a> {
    method: &'a str,
    path: &'a str,
    url: &'a str,
    route: &'a str,
    query: &'a str,
    hostname: &'a str,
    headers: &'a std::collections::BTreeMap<String, String>,
    params: &'a std::collections::BTreeMap<String, String>,
    caller: Option<&'a serde_json::Value>,
}

impl RecordedInputs {
    /// The encoded record of a run of `request` (with its body) as `caller` (the request's own
    /// caller, or what the record keeps of it) that drew `draws` and answered `response`.
    pub fn encode_run(request: &JsRequest, caller: Option<&serde_json::Value>, draws: &Draws, response: &JsResponse) -> Vec<u8> {
        let JsRequest { method, path, url, route, query, hostname, headers, params, body, .. } = request;
        let view = RecordView {
            version: RECORD_VERSION,
            request: RequestView { method, path, url, route, query, hostname, headers, params, caller },
            body,
            draws,
            response: ResponseSummary::of(response),
        };
        let mut out = Vec::with_capacity(256 + body.len());
        ciborium::into_writer(&view, &mut out).expect("writing CBOR to memory does not fail");
        out
    }

    /// The request to run the handler with again.
    pub fn to_request(&self) -> JsRequest {
        JsRequest { body: self.body.clone(), ..self.request.clone() }
    }

    /// CBOR (as [`RecordedInputs::encode_run`] writes it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("writing CBOR to memory does not fail");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordedInputs, String> {
        let record: RecordedInputs = ciborium::from_reader(bytes).map_err(|e| format!("the recorded inputs do not decode: {e}"))?;
        if record.version != RECORD_VERSION {
            return Err(format!("recorded inputs of version {} (this build reads version {RECORD_VERSION})", record.version));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JsRequest {
        JsRequest {
            method: "POST".into(),
            path: "/app/log".into(),
            url: "/app/log?id=3".into(),
            route: "/app/log".into(),
            query: "id=3".into(),
            hostname: "127.0.0.1:8000".into(),
            headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
            params: [("id".to_owned(), "3".to_owned())].into(),
            caller: Some(serde_json::json!({"policy": "user_cert", "id": "ab"})),
            body: b"{\"msg\":\"hi\"}".to_vec(),
            historical: None,
        }
    }

    #[test]
    fn a_record_round_trips_and_gives_the_request_back() {
        let response = JsResponse { status: 200, headers: Vec::new(), content_type: None, body: b"ok".to_vec() };
        let draws = Draws { time_ms: vec![1_700_000_000_000], random: vec![0.5], bytes: vec![serde_bytes::ByteBuf::from(vec![9; 16])] };
        let original = request();
        let bytes = RecordedInputs::encode_run(&original, original.caller.as_ref(), &draws, &response);
        let back = RecordedInputs::decode(&bytes).expect("decodes");
        assert_eq!(back.response, ResponseSummary { status: 200, body_digest: *blake3::hash(b"ok").as_bytes() });
        assert_eq!(back.encode(), bytes, "the owned and the borrowed encodings are the same bytes");
        let again = back.to_request();
        assert_eq!(
            (again.method, again.url, again.query, again.headers, again.params, again.caller, again.body),
            (original.method, original.url, original.query, original.headers, original.params, original.caller, original.body)
        );
        assert_eq!(back.draws, draws);
    }

    #[test]
    fn damaged_or_future_records_are_refused() {
        let response = JsResponse { status: 201, headers: Vec::new(), content_type: None, body: Vec::new() };
        let bytes = RecordedInputs::encode_run(&request(), None, &Draws::default(), &response);
        let mut record = RecordedInputs::decode(&bytes).expect("decodes");
        assert_eq!(record.request.caller, None, "the caller the record keeps");
        assert!(RecordedInputs::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(RecordedInputs::decode(b"not cbor").is_err());
        record.version = 2;
        let e = RecordedInputs::decode(&record.encode()).expect_err("a later version");
        assert!(e.contains("version 2"), "{e}");
    }
}
