//! Recovery shares (SPEC §9), as plain functions over one transaction.
//!
//! The service's ledger secrets are kept in the ledger sealed under a *recovery key* (32
//! random bytes, fresh each time shares are issued) in [`RECOVERY_SECRETS`]. The recovery key
//! is split with Shamir secret sharing into one share per active `Participant`, any
//! `threshold` of which give it back; each active `Owner` gets the whole key. Each member's
//! share is encrypted to its RSA key ([`RECOVERY_SHARES`]), so that only the member can read
//! it, and a service whose nodes are all gone can be opened by members submitting shares
//! ([`submit_share`], [`combine_submitted`]).
//!
//! Shares are issued again whenever the recovery members, the threshold or the ledger secrets
//! change ([`reissue_needed`]); the caller passes the ledger secrets the service has. A secret
//! made by a rekey in the same transaction does not know its first seqno yet: it is recorded
//! as "from the transaction after the one that wrote the record" and resolved from the
//! record's version when the shares are combined.

use base64::Engine;
use consort_crypto::LedgerSecret;
use consort_kv::{Tx, WriteSet, LEDGER_REKEY_REQUESTS, RECOVERY_SHARES_REFRESH_REQUESTS, SINGLETON_KEY};
use serde::{Deserialize, Serialize};

use crate::{get_json, put_json, GovError};
use consort_kv::names::{
    MEMBERS_ENCRYPTION_KEYS, MEMBERS_INFO, RECOVERY_SECRETS, RECOVERY_SHARES, SERVICE_CONFIG, SERVICE_INFO, SUBMITTED_SHARES,
};

/// The threshold when the service configuration sets none (CCF's default).
pub const RECOVERY_THRESHOLD_DEFAULT: u8 = 1;
/// Binds the sealed secrets to their purpose.
const SEALED_SECRETS_AAD: &[u8] = b"consort recovery ledger secrets v1";

const SHARE_PART: u8 = 1;
const SHARE_FULL: u8 = 2;

/// What [`RECOVERY_SECRETS`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    /// How many Participant shares give the recovery key.
    pub threshold: u8,
    pub participants: Vec<String>,
    pub owners: Vec<String>,
    /// Base64 of the JSON list of [`SealedSecret`]s, sealed (AES-256-GCM) under the recovery key.
    pub sealed_secrets: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SealedSecret {
    /// The first seqno the secret seals; `None`: the one after the record's own transaction.
    from: Option<u64>,
    secret: String,
}

/// A ledger secret as shares protect it: its first seqno (`None`: it is made by the
/// transaction that issues the shares, and applies from the next one) and its bytes.
#[derive(Debug, Clone)]
pub struct RecoverySecret {
    pub from: Option<u64>,
    pub secret: LedgerSecret,
}

/// A decrypted share, as a member submits it: one Shamir share, or an Owner's whole key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    Part(Vec<u8>),
    Full([u8; 32]),
}

impl Share {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Share::Part(s) => [&[SHARE_PART][..], s].concat(),
            Share::Full(k) => [&[SHARE_FULL][..], &k[..]].concat(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Share, ShareError> {
        match bytes.split_first() {
            // A Shamir share of a 32-byte key: its x coordinate and 32 bytes.
            Some((&SHARE_PART, rest)) if rest.len() == 33 => Ok(Share::Part(rest.to_vec())),
            Some((&SHARE_FULL, rest)) => rest.try_into().map(Share::Full).map_err(|_| ShareError::WrongLength),
            _ => Err(ShareError::NotAShare(bytes.len())),
        }
    }
}

/// Why submitted bytes are not a recovery share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("a recovery key share of the wrong length")]
    WrongLength,
    #[error("{0} bytes that are not a recovery share of this service")]
    NotAShare(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Role {
    NonParticipant,
    Participant,
    Owner,
}

struct RecoveryMember {
    id: String,
    owner: bool,
    key_pem: String,
}

/// Active members with a recovery role and an encryption key, in id order.
fn recovery_members(tx: &mut Tx) -> Vec<RecoveryMember> {
    let mut out = Vec::new();
    for (id, key) in tx.entries(MEMBERS_ENCRYPTION_KEYS) {
        let info: Option<serde_json::Value> = get_json(tx, MEMBERS_INFO, &id);
        let Some(info) = info.filter(|i| i["status"] == "Active") else { continue };
        let role = serde_json::from_value(info["recovery_role"].clone()).unwrap_or(Role::Participant);
        if role == Role::NonParticipant {
            continue;
        }
        out.push(RecoveryMember {
            id: String::from_utf8_lossy(&id).into_owned(),
            owner: role == Role::Owner,
            key_pem: String::from_utf8_lossy(&key).into_owned(),
        });
    }
    out
}

/// The number of members a threshold may count: active recovery members.
pub fn recovery_member_count(tx: &mut Tx) -> usize {
    recovery_members(tx).len()
}

/// The service configuration's `recovery_threshold` (CCF's default, 1, when unset).
pub fn threshold(tx: &mut Tx) -> u8 {
    let config: Option<serde_json::Value> = get_json(tx, SERVICE_CONFIG, &SINGLETON_KEY);
    config
        .and_then(|c| c["recovery_threshold"].as_u64())
        .and_then(|t| u8::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(RECOVERY_THRESHOLD_DEFAULT)
}

/// Whether a transaction's writes change who holds shares, the threshold or the secrets.
pub fn reissue_needed(writes: &WriteSet) -> bool {
    [MEMBERS_INFO, MEMBERS_ENCRYPTION_KEYS, SERVICE_CONFIG, LEDGER_REKEY_REQUESTS, RECOVERY_SHARES_REFRESH_REQUESTS]
        .iter()
        .any(|m| writes.maps.get(*m).is_some_and(|w| !w.is_empty()))
}

/// Issues fresh shares of a fresh recovery key to the active recovery members and seals
/// `secrets` under it. With no recovery member, the shares and the record are removed (the
/// service then cannot be recovered, and the log of the node says so). Returns how many
/// members hold a share.
pub fn issue_shares(tx: &mut Tx, secrets: &[RecoverySecret]) -> Result<usize, GovError> {
    // Read, so that two transactions issuing shares concurrently conflict.
    let _ = tx.get(RECOVERY_SECRETS, &SINGLETON_KEY);
    tx.clear(RECOVERY_SHARES);
    let members = recovery_members(tx);
    if members.is_empty() {
        tx.remove(RECOVERY_SECRETS, SINGLETON_KEY.to_vec());
        return Ok(0);
    }
    let threshold = threshold(tx);
    let key: [u8; 32] = consort_crypto::random_bytes();
    let participants: Vec<&RecoveryMember> = members.iter().filter(|m| !m.owner).collect();
    let parts = if participants.is_empty() {
        Vec::new()
    } else {
        consort_crypto::recovery::split_secret(&key, threshold, participants.len())
            .map_err(|e| GovError::new(400, "InvalidInput", format!("splitting the recovery key: {e}")))?
    };
    let mut shares: Vec<(&RecoveryMember, Share)> = participants.iter().copied().zip(parts.into_iter().map(Share::Part)).collect();
    shares.extend(members.iter().filter(|m| m.owner).map(|m| (m, Share::Full(key))));
    for (member, share) in &shares {
        let encrypted = consort_crypto::recovery::encrypt_share(&member.key_pem, &share.encode()).map_err(|e| {
            GovError::new(400, "InvalidInput", format!("member {}'s encryption public key cannot take a recovery share: {e}", member.id))
        })?;
        tx.put(RECOVERY_SHARES, member.id.clone().into_bytes(), encrypted);
    }
    let list: Vec<SealedSecret> = secrets.iter().map(|s| SealedSecret { from: s.from, secret: hex::encode(s.secret.as_bytes()) }).collect();
    let plain = serde_json::to_vec(&list).expect("secrets serialise");
    let record = RecoveryRecord {
        threshold,
        participants: participants.iter().map(|m| m.id.clone()).collect(),
        owners: members.iter().filter(|m| m.owner).map(|m| m.id.clone()).collect(),
        sealed_secrets: base64::engine::general_purpose::STANDARD.encode(LedgerSecret::from_bytes(key).seal(SEALED_SECRETS_AAD, &plain)),
    };
    put_json(tx, RECOVERY_SECRETS, &SINGLETON_KEY, &record);
    Ok(shares.len())
}

/// `GET /gov/recovery/encrypted-shares/{memberId}`: the member's encrypted share, if it has one.
pub fn encrypted_share(state: &consort_kv::State, member_id: &str) -> Option<Vec<u8>> {
    state.get(RECOVERY_SHARES, member_id.as_bytes()).map(|s| s.to_vec())
}

/// Where a submission leaves the recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Members whose share is in (a member submitting again is counted once).
    pub count: usize,
    pub threshold: u8,
    /// Whether an Owner's whole key is among them.
    pub full_key: bool,
}

impl Submitted {
    /// Whether the submitted shares should give the recovery key.
    pub fn reached(&self) -> bool {
        self.full_key || self.count >= self.threshold as usize
    }
}

fn record(tx: &mut Tx) -> Option<(RecoveryRecord, Option<u64>)> {
    let record = get_json(tx, RECOVERY_SECRETS, &SINGLETON_KEY)?;
    Some((record, tx.version_of_previous_write(RECOVERY_SECRETS, &SINGLETON_KEY)))
}

/// `POST /gov/recovery/members/{memberId}:recover` (a verified `recovery_share` request from
/// `member_id` whose payload is `{"share": base64}`): records the member's share.
pub fn submit_share(tx: &mut Tx, member_id: &str, payload: &[u8]) -> Result<Submitted, GovError> {
    let status = get_json::<serde_json::Value>(tx, SERVICE_INFO, &SINGLETON_KEY).map(|i| i["status"].clone());
    if status.as_ref().and_then(|s| s.as_str()) != Some("WaitingForRecoveryShares") {
        return Err(GovError::new(
            403,
            "ServiceNotWaitingForRecoveryShares",
            format!("Service is not waiting for recovery shares (it is {}).", status.unwrap_or_default()),
        ));
    }
    let Some((record, _)) = record(tx) else {
        return Err(GovError::new(403, "ServiceNotWaitingForRecoveryShares", "the previous service issued no recovery shares"));
    };
    if !record.participants.iter().chain(&record.owners).any(|m| m == member_id) {
        return Err(GovError::new(
            403,
            "AuthorizationFailed",
            format!("Member {member_id} holds no recovery share of the previous service (it had no recovery role when shares were last issued)."),
        ));
    }
    #[derive(Deserialize)]
    struct Body {
        share: String,
    }
    let body: Body = serde_json::from_slice(payload)
        .map_err(|e| GovError::new(400, "InvalidInput", format!("a recovery share message is {{\"share\": base64}}: {e}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.share.trim())
        .map_err(|e| GovError::new(400, "InvalidInput", format!("share is not base64: {e}")))?;
    let share = Share::decode(&bytes).map_err(|e| GovError::new(400, "InvalidInput", format!("share: {e}")))?;
    tx.put(SUBMITTED_SHARES, member_id.as_bytes().to_vec(), share.encode());
    let submitted: Vec<Share> = tx.entries(SUBMITTED_SHARES).iter().filter_map(|(_, v)| Share::decode(v).ok()).collect();
    Ok(Submitted { count: submitted.len(), threshold: record.threshold, full_key: submitted.iter().any(|s| matches!(s, Share::Full(_))) })
}

/// The ledger secrets the submitted shares open, as `(first seqno, secret)` in order. An
/// error says why they do not (the caller discards the submitted shares then).
pub fn combine_submitted(tx: &mut Tx) -> Result<Vec<(u64, LedgerSecret)>, String> {
    let (record, version) = record(tx).ok_or("the previous service issued no recovery shares")?;
    let shares: Vec<Share> = tx.entries(SUBMITTED_SHARES).iter().filter_map(|(_, v)| Share::decode(v).ok()).collect();
    let key: [u8; 32] = match shares.iter().find_map(|s| if let Share::Full(k) = s { Some(*k) } else { None }) {
        Some(k) => k,
        None => {
            let parts: Vec<Vec<u8>> = shares.into_iter().filter_map(|s| if let Share::Part(p) = s { Some(p) } else { None }).collect();
            if parts.len() < record.threshold as usize {
                return Err(format!("{} of the {} shares needed are in", parts.len(), record.threshold));
            }
            let raw = consort_crypto::recovery::combine_shares(&parts, record.threshold).map_err(|e| e.to_string())?;
            raw.try_into().map_err(|_| "the shares give a key of the wrong length".to_owned())?
        }
    };
    let sealed =
        base64::engine::general_purpose::STANDARD.decode(&record.sealed_secrets).map_err(|e| format!("the sealed ledger secrets: {e}"))?;
    let plain = LedgerSecret::from_bytes(key)
        .open(SEALED_SECRETS_AAD, &sealed)
        .map_err(|_| "the submitted shares do not give the recovery key (a share is wrong or belongs to another service)".to_owned())?;
    let list: Vec<SealedSecret> = serde_json::from_slice(&plain).map_err(|e| format!("the sealed ledger secrets: {e}"))?;
    let made_with_record = version.map_or(0, |v| v + 1);
    list.into_iter()
        .map(|s| {
            let raw: [u8; 32] =
                hex::decode(&s.secret).ok().and_then(|v| v.try_into().ok()).ok_or("a sealed ledger secret is not 32 bytes")?;
            Ok((s.from.unwrap_or(made_with_record), LedgerSecret::from_bytes(raw)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
