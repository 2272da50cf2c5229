//! Key-store checks: every record's wrapping chain unwraps with the available key providers,
//! no record is stored unwrapped, (scope, epoch) pairs are unique, and key scopes are
//! consistent (each has keys, wrapped as the scope says). References from headers,
//! directory ids and symlink targets are checked against the result by the walker.

use std::collections::{BTreeMap, HashMap};

use crate::format::{DataKeyRef, KeyStore};
use crate::volume::Volume;

use super::report::{KeyReport, Problem, ProblemCode, Report};

pub(super) const KEY_STORE_PATH: &str = ".cmkfs/keystore.json";

/// The state of each data key, for the walker: `Ok` if it unwraps, `Err(reason)` if not.
pub(super) struct KeyStates {
    states: HashMap<DataKeyRef, Result<(), String>>,
    pub(super) used: BTreeMap<DataKeyRef, u64>,
}

impl KeyStates {
    /// Records that an object references `key`; returns the problem to report with the
    /// object, if the key is missing or unusable.
    pub(super) fn reference(&mut self, key: DataKeyRef) -> Option<(ProblemCode, String)> {
        *self.used.entry(key).or_default() += 1;
        match self.states.get(&key) {
            None => Some((
                ProblemCode::KeyMissing,
                format!("references data key {key}, which is not in the key store"),
            )),
            Some(Err(e)) => Some((
                ProblemCode::KeyUnavailable,
                format!("references data key {key}, which does not unwrap: {e}"),
            )),
            Some(Ok(())) => None,
        }
    }
}

fn key_problem(code: ProblemCode, key: Option<DataKeyRef>, message: String) -> Problem {
    Problem {
        code,
        backing_path: KEY_STORE_PATH.into(),
        path: None,
        kind: "key".into(),
        blocks: Vec::new(),
        key,
        message,
    }
}

/// Checks every record of the volume's key store and adds one `KeyReport` per record.
pub(super) fn check_key_store(vol: &Volume, report: &mut Report) -> KeyStates {
    let store: KeyStore = vol.keys().store_snapshot();
    let mut states = HashMap::new();
    let mut seen: HashMap<DataKeyRef, usize> = HashMap::new();
    for record in &store.data_keys {
        let key = record.key_ref();
        let n = seen.entry(key).or_default();
        *n += 1;
        if *n == 2 {
            report.push(key_problem(
                ProblemCode::KeyDuplicate,
                Some(key),
                format!("data key {key} has more than one record"),
            ));
        }
        let mut error = None;
        if record.wrapped_by.is_empty() {
            let msg = format!("data key {key} is not wrapped by any key (stored in the clear)");
            report.push(key_problem(
                ProblemCode::KeyNotWrapped,
                Some(key),
                msg.clone(),
            ));
            error = Some(msg);
        }
        match vol.keys().unwrap_record(record) {
            Ok(_secret) => {}
            Err(e) => {
                let msg = format!("data key {key} does not unwrap: {e}");
                report.push(key_problem(ProblemCode::KeyUnwrap, Some(key), msg));
                error.get_or_insert(e.to_string());
            }
        }
        // A duplicate keeps the verdict of its first record.
        states.entry(key).or_insert_with(|| match &error {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        });
        report.keys.push(KeyReport {
            scope: record.scope,
            epoch: record.epoch,
            created: record.created,
            current: store.current(record.scope) == Some(key),
            wrapped_by: record.wrapped_by.clone(),
            unwraps: error.is_none(),
            error,
            used_by: 0,
        });
    }
    check_scopes(&store, report);
    KeyStates {
        states,
        used: BTreeMap::new(),
    }
}

/// Key scopes: each has data keys, a well-formed root directory id, and its data keys carry
/// its customer-managed key as their outer layer (the service key alone without one); no
/// data key belongs to a scope the store does not record.
fn check_scopes(store: &KeyStore, report: &mut Report) {
    use crate::format::WrapperId;
    for s in &store.scopes {
        if !store.data_keys.iter().any(|k| k.scope == s.scope) {
            report.push(key_problem(
                ProblemCode::KeyMissing,
                None,
                format!("key scope {} has no data key", s.scope),
            ));
        }
        if s.root_dir_id.len() != 32 || !s.root_dir_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            report.push(key_problem(
                ProblemCode::KeyMissing,
                None,
                format!(
                    "key scope {} names no valid root directory id ({:?})",
                    s.scope, s.root_dir_id
                ),
            ));
        }
    }
    for k in &store.data_keys {
        if k.scope != 0 && store.scope(k.scope).is_none() {
            report.push(key_problem(
                ProblemCode::KeyMissing,
                Some(k.key_ref()),
                format!(
                    "data key {} belongs to key scope {}, which the key store does not record",
                    k.key_ref(),
                    k.scope
                ),
            ));
            continue;
        }
        let outer = match k.wrapped_by.last() {
            Some(WrapperId::Cmk { key_id, .. }) => crate::keys::versionless(key_id),
            _ => None,
        };
        let wanted = store.scope_cmk(k.scope).map(str::to_string);
        if outer != wanted {
            report.push(key_problem(
                ProblemCode::KeyNotWrapped,
                Some(k.key_ref()),
                format!(
                    "data key {} is not wrapped as its key scope says (outer customer-managed key {}, scope's {})",
                    k.key_ref(),
                    outer.as_deref().unwrap_or("none"),
                    wanted.as_deref().unwrap_or("none")
                ),
            ));
        }
    }
}

/// Copies the reference counts into the key reports.
pub(super) fn record_usage(states: &KeyStates, report: &mut Report) {
    for k in &mut report.keys {
        k.used_by = states
            .used
            .get(&DataKeyRef {
                scope: k.scope,
                epoch: k.epoch,
            })
            .copied()
            .unwrap_or(0);
    }
}
