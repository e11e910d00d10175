//! `visio_media._native`: the export list of the extension module, nothing else.

use pyo3::prelude::*;

mod engine;
mod errors;
mod events;
mod loadgen;
mod offer;
mod stats;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EngineError", m.py().get_type::<errors::EngineError>())?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<loadgen::LoadGen>()?;
    m.add_class::<loadgen::Relay>()?;
    m.add_function(wrap_pyfunction!(offer::inspect_offer, m)?)?;
    Ok(())
}
