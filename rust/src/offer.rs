//! `inspect_offer`: the engine's reading of a client's offer, for the grant check in Python.

use pyo3::prelude::*;

use crate::errors::Failure;

/// `(kind, mid, direction, rejected)` of one m-section.
type Section = (String, Option<String>, String, bool);

/// The m-sections of `offer_sdp` as the engine reads them: `(kind, mid, direction, rejected)`
/// each. Raises `EngineError` for an offer the engine would refuse.
#[pyfunction]
pub fn inspect_offer(offer_sdp: &str) -> PyResult<Vec<Section>> {
    let sections = visio_engine::offer::inspect_offer(offer_sdp).map_err(Failure)?;
    Ok(sections
        .into_iter()
        .map(|s| (s.kind, s.mid, s.direction.to_owned(), s.rejected))
        .collect())
}
