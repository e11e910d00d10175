//! `stats_snapshot()` as a Python dict: totals, per-shard counters, per-peer counters.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use visio_engine::engine::Snapshot;
use visio_engine::stats::ShardSnapshot;

fn shard_dict<'py>(py: Python<'py>, s: &ShardSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("packets_in", s.packets_in)?;
    d.set_item("bytes_in", s.bytes_in)?;
    d.set_item("packets_out", s.packets_out)?;
    d.set_item("bytes_out", s.bytes_out)?;
    d.set_item("rtp_forwarded", s.rtp_forwarded)?;
    d.set_item("stun_responses", s.stun_responses)?;
    d.set_item("keyframe_requests_in", s.keyframe_requests_in)?;
    d.set_item("keyframe_requests_out", s.keyframe_requests_out)?;
    d.set_item("nacks_in", s.nacks_in)?;
    d.set_item("peers", s.peers)?;
    d.set_item("rooms", s.rooms)?;
    d.set_item("tracks", s.tracks)?;
    d.set_item("peer_panics", s.peer_panics)?;
    d.set_item("events_dropped", s.events_dropped)?;
    d.set_item("send_blocked", s.send_blocked)?;
    d.set_item("slot_switches", s.slot_switches)?;
    let drops = PyDict::new(py);
    for (reason, n) in &s.drops {
        drops.set_item(reason, n)?;
    }
    d.set_item("drops", drops)?;
    Ok(d)
}

/// Sums shard counters field by field (drops by reason too).
fn total(shards: &[ShardSnapshot]) -> ShardSnapshot {
    let mut t = ShardSnapshot::default();
    for s in shards {
        t.packets_in += s.packets_in;
        t.bytes_in += s.bytes_in;
        t.packets_out += s.packets_out;
        t.bytes_out += s.bytes_out;
        t.rtp_forwarded += s.rtp_forwarded;
        t.stun_responses += s.stun_responses;
        t.keyframe_requests_in += s.keyframe_requests_in;
        t.keyframe_requests_out += s.keyframe_requests_out;
        t.nacks_in += s.nacks_in;
        t.peers += s.peers;
        t.rooms += s.rooms;
        t.tracks += s.tracks;
        t.peer_panics += s.peer_panics;
        t.events_dropped += s.events_dropped;
        t.send_blocked += s.send_blocked;
        t.slot_switches += s.slot_switches;
        if t.drops.is_empty() {
            t.drops = s.drops.clone();
        } else {
            for (acc, (_, n)) in t.drops.iter_mut().zip(&s.drops) {
                acc.1 += n;
            }
        }
    }
    t
}

pub fn to_python<'py>(py: Python<'py>, snap: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = shard_dict(py, &total(&snap.shards))?;
    let shards = PyList::empty(py);
    for s in &snap.shards {
        shards.append(shard_dict(py, s)?)?;
    }
    d.set_item("shards", shards)?;
    let peers = PyDict::new(py);
    for p in &snap.peers {
        let e = PyDict::new(py);
        e.set_item("packets_in", p.packets_in)?;
        e.set_item("bytes_in", p.bytes_in)?;
        e.set_item("packets_out", p.packets_out)?;
        e.set_item("bytes_out", p.bytes_out)?;
        e.set_item("rtp_in", p.rtp_in)?;
        e.set_item("rtp_out", p.rtp_out)?;
        e.set_item("nacks_in", p.nacks_in)?;
        e.set_item("plis_in", p.plis_in)?;
        e.set_item("rtt_seconds", p.rtt_seconds)?;
        e.set_item("loss_ratio", p.loss_ratio)?;
        e.set_item("srtp_profile", p.srtp_profile)?;
        e.set_item("connected", p.connected)?;
        peers.set_item(p.peer.0, e)?;
    }
    d.set_item("peer_stats", peers)?;
    Ok(d)
}
