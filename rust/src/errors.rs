//! The one place where engine errors become Python exceptions.

use pyo3::exceptions::{PyException, PyKeyError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    _native,
    EngineError,
    PyException,
    "Any failure reported by the Rust engine (bad SDP, unknown peer, wrong state)."
);

pub struct Failure(pub visio_engine::Error);

impl From<visio_engine::Error> for Failure {
    fn from(e: visio_engine::Error) -> Self {
        Failure(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        use visio_engine::Error as E;
        let msg = f.0.to_string();
        match f.0 {
            E::Config(_) => PyValueError::new_err(msg),
            E::UnknownPeer(_) | E::UnknownTrack(_) => PyKeyError::new_err(msg),
            E::NotRunning => PyRuntimeError::new_err(msg),
            _ => EngineError::new_err(msg),
        }
    }
}
