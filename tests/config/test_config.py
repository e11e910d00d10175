"""Configuration: strict TOML, env overrides, secrets, dev mode (visio_media.config)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from visio_media.config import (
    MIN_SECRET_BYTES,
    SAMPLE_SECRET_PLACEHOLDER,
    AuthConfig,
    Config,
    MediaConfig,
    ServerConfig,
    effective_shards,
    load_config,
    secret_problem,
)
from visio_media.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config-sample.toml"
STRONG = "kq3Zr8v-Xw1LmN0pT5sYb7uC2eH4jF6gA9dQ"  # 36 bytes, varied
SECTIONS = ("server", "media", "auth", "room", "signalling", "drain")


def write(tmp_path: Path, text: str, name: str = "visio.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kwargs: object) -> Config:
    kwargs.setdefault("env", {"VISIO_SECRET": STRONG})
    return load_config(write(tmp_path, text), **kwargs)  # type: ignore[arg-type]


def error_of(tmp_path: Path, text: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kwargs)
    return str(info.value)


# ---- the sample file ------------------------------------------------------------------------


def test_sample_loads_in_dev_mode_with_every_default() -> None:
    cfg = load_config(SAMPLE, env={}, dev=True)
    assert cfg.server.dev_mode is True
    # Dev mode replaced the placeholder by a generated key.
    assert cfg.auth.secret != SAMPLE_SECRET_PLACEHOLDER
    assert len(cfg.auth.secret.encode()) >= MIN_SECRET_BYTES
    # Every other value written in the sample is the default.
    expected = Config()
    assert (
        dataclasses.replace(
            cfg,
            server=dataclasses.replace(cfg.server, dev_mode=False),
            auth=dataclasses.replace(cfg.auth, secret=""),
        )
        == expected
    )


def test_sample_placeholder_secret_is_refused_outside_dev_mode() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SAMPLE, env={})
    message = str(info.value)
    assert "secret" in message and "VISIO_SECRET" in message
    assert SAMPLE_SECRET_PLACEHOLDER not in message
    # The placeholder is long enough: refused as a placeholder, not for its length.
    assert len(SAMPLE_SECRET_PLACEHOLDER.encode()) >= MIN_SECRET_BYTES
    assert secret_problem(SAMPLE_SECRET_PLACEHOLDER) is not None


def test_sample_writes_the_placeholder() -> None:
    assert f'secret = "{SAMPLE_SECRET_PLACEHOLDER}"' in SAMPLE.read_text()


def test_sample_with_a_real_secret_from_the_environment_loads() -> None:
    cfg = load_config(SAMPLE, env={"VISIO_SECRET": STRONG})
    assert cfg.auth.secret == STRONG
    assert cfg.server.dev_mode is False


def _sample_keys() -> dict[str, list[tuple[str, list[str]]]]:
    """section -> [(key, its comment block)], keys written or commented out (`# key = ...`)."""
    found: dict[str, list[tuple[str, list[str]]]] = {}
    section = None
    comments: list[str] = []
    for line in SAMPLE.read_text().splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line.strip())
        key = re.fullmatch(r"#?\s*(\w+)\s*=.*", line.strip())
        if header:
            section = header.group(1)
            found[section] = []
            comments = []
        elif key and section is not None:
            # Keys written together (port_min, port_max) share the comment above them.
            shared = comments or (found[section][-1][1] if found[section] else [])
            found[section].append((key.group(1), shared))
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            comments = []
    return found


def test_sample_documents_every_key_with_its_default() -> None:
    found = _sample_keys()
    assert tuple(found) == SECTIONS
    schema = {f.name: f.default_factory() for f in dataclasses.fields(Config)}  # type: ignore[misc]
    for section, obj in schema.items():
        keys = {k: c for k, c in found[section] if k in {f.name for f in dataclasses.fields(obj)}}
        for f in dataclasses.fields(obj):
            assert f.name in keys, f"{section}.{f.name} missing from config-sample.toml"
            block = "\n".join(keys[f.name])
            assert "Default" in block, f"{section}.{f.name}: no 'Default:' in its comment"
            assert len(block) > 40, f"{section}.{f.name}: no explanation"


# ---- unknown keys and sections --------------------------------------------------------------


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[media]\nshard = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"VISIO_SECRET": STRONG})
    assert str(info.value) == (
        f"unknown key 'media.shard' in {path} (did you mean 'media.shards'?)"
    )


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[server]\nzzzzzz = 1\n")
    assert "unknown key 'server.zzzzzz'" in message
    assert "did you mean" not in message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[medai]\nshards = 2\n")
    assert "unknown section [medai]" in message
    assert "did you mean 'media'" in message


def test_key_outside_any_section(tmp_path: Path) -> None:
    message = error_of(tmp_path, "port = 8000\n")
    assert "unknown key 'port'" in message
    assert "'server.port'" in message


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match=r"'server\.prot'.*'server\.port'"):
        load_config(env={"VISIO_SECRET": STRONG}, overrides={"server.prot": 1})


# ---- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('[server]\nport = "7880"\n', "server.port", "integer"),
        ("[server]\nport = true\n", "server.port", "integer"),  # a bool is not an int
        ("[server]\nport = 7880.0\n", "server.port", "integer"),
        ("[server]\ndev_mode = 1\n", "server.dev_mode", "boolean"),
        ('[server]\ndev_mode = "yes"\n', "server.dev_mode", "boolean"),
        ("[server]\nhost = 127\n", "server.host", "string"),
        ("[media]\nshards = false\n", "media.shards", "integer"),
        ("[media]\nannounce_ip = [1, 2]\n", "media.announce_ip", "string"),
        ('[room]\nempty_timeout_seconds = "5"\n', "room.empty_timeout_seconds", "number"),
        ("[room]\nreconnect_grace_seconds = true\n", "room.reconnect_grace_seconds", "number"),
        ("[auth]\nsecret = 12345\n", "auth.secret", "string"),
        ("[auth]\ntoken_ttl_seconds = 1.5\n", "auth.token_ttl_seconds", "integer"),
        ("[signalling]\nmax_message_bytes = {a = 1}\n", "signalling.max_message_bytes", "int"),
    ],
)
def test_wrong_type_names_key_and_expected_type(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    message = error_of(tmp_path, toml)
    assert f"'{key}'" in message
    assert expected in message
    assert str(tmp_path) in message


def test_section_must_be_a_table(tmp_path: Path) -> None:
    message = error_of(tmp_path, "server = 5\n")
    assert "'server'" in message and "table" in message


def test_integers_are_accepted_for_seconds(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[room]\nempty_timeout_seconds = 5\n[drain]\ndeadline_seconds = 2\n")
    assert cfg.room.empty_timeout_seconds == 5.0
    assert isinstance(cfg.room.empty_timeout_seconds, float)
    assert cfg.drain.deadline_seconds == 2.0


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_numbers_refused(tmp_path: Path, value: str) -> None:
    message = error_of(tmp_path, f"[drain]\ndeadline_seconds = {value}\n")
    assert "drain.deadline_seconds" in message


def test_wrong_type_in_override() -> None:
    with pytest.raises(ConfigError, match=r"'server\.port'.*integer"):
        load_config(env={"VISIO_SECRET": STRONG}, overrides={"server.port": "80"})


# ---- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nport = 65536\n", "server.port"),
        ("[server]\nport = -1\n", "server.port"),
        ('[server]\nhost = "example.org"\n', "server.host"),
        ('[server]\nhost = "127.0.0.300"\n', "server.host"),
        ("[media]\nshards = 257\n", "media.shards"),
        ("[media]\nshards = -1\n", "media.shards"),
        ('[media]\nbind_ip = "not-an-ip"\n', "media.bind_ip"),
        ('[media]\nannounce_ip = "localhost"\n', "media.announce_ip"),
        ('[media]\nannounce_ip = "0.0.0.0"\n', "media.announce_ip"),
        ("[media]\nport_min = 70000\nport_max = 70001\n", "media.port_min"),
        ("[media]\nport_min = 50010\nport_max = 50000\n", "media.port_min"),
        ("[media]\nport_min = 50000\n", "media.port_max"),
        ("[media]\nport_max = 50000\n", "media.port_min"),
        ("[media]\nshards = 4\nport_min = 50000\nport_max = 50002\n", "media.port_min"),
        ("[auth]\ntoken_ttl_seconds = 0\n", "auth.token_ttl_seconds"),
        ("[room]\nmax_participants = 0\n", "room.max_participants"),
        ("[room]\nempty_timeout_seconds = 0\n", "room.empty_timeout_seconds"),
        ("[room]\nreconnect_grace_seconds = -1\n", "room.reconnect_grace_seconds"),
        ("[signalling]\nmax_message_bytes = 10\n", "signalling.max_message_bytes"),
        ("[signalling]\nhandshake_timeout_seconds = 0\n", "signalling.handshake_timeout_seconds"),
        ("[drain]\ndeadline_seconds = -5\n", "drain.deadline_seconds"),
    ],
)
def test_out_of_range_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    message = error_of(tmp_path, toml)
    assert key in message


def test_valid_ranges(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "[server]\nport = 0\n"
        "[media]\nshards = 2\nport_min = 50000\nport_max = 50001\n"
        "[room]\nreconnect_grace_seconds = 0\n",
    )
    assert cfg.server.port == 0
    assert (cfg.media.port_min, cfg.media.port_max) == (50000, 50001)
    assert cfg.room.reconnect_grace_seconds == 0.0


def test_loopback_bind_with_public_announce_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[media]\nannounce_ip = "203.0.113.10"\n')
    assert "media.bind_ip" in message and "media.announce_ip" in message


def test_all_interfaces_needs_announce_ip(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[server]\nhost = "0.0.0.0"\n')
    assert "server.host" in message and "announce_ip" in message
    message = error_of(tmp_path, '[media]\nbind_ip = "::"\n')
    assert "media.bind_ip" in message and "announce_ip" in message
    cfg = load(
        tmp_path,
        '[server]\nhost = "0.0.0.0"\n[media]\nbind_ip = "0.0.0.0"\nannounce_ip = "203.0.113.10"\n',
    )
    assert cfg.server.host == "0.0.0.0"
    assert cfg.media.announce_ip == "203.0.113.10"


# ---- files ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={"VISIO_SECRET": STRONG})


def test_invalid_toml(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[server\nport = 1\n")
    assert "not valid TOML" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nhost = "\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, env={"VISIO_SECRET": STRONG})


def test_no_file_gives_defaults() -> None:
    cfg = load_config(env={"VISIO_SECRET": STRONG})
    assert cfg == Config(auth=AuthConfig(secret=STRONG))


# ---- environment and overrides --------------------------------------------------------------


def test_env_overrides_the_file(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        '[server]\nhost = "127.0.0.1"\nport = 1000\n[media]\nbind_ip = "10.0.0.5"\n'
        f'[auth]\nsecret = "{"z" * 10}"\n',
        env={
            "VISIO_SECRET": STRONG,
            "VISIO_HOST": "10.0.0.5",
            "VISIO_PORT": "8443",
            "VISIO_ANNOUNCE_IP": "203.0.113.7",
        },
    )
    assert cfg.auth.secret == STRONG
    assert cfg.server.host == "10.0.0.5"
    assert cfg.server.port == 8443
    assert cfg.media.announce_ip == "203.0.113.7"


def test_empty_env_values_are_unset(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        f'[auth]\nsecret = "{STRONG}"\n',
        env={"VISIO_SECRET": "", "VISIO_PORT": "", "VISIO_HOST": ""},
    )
    assert cfg.auth.secret == STRONG
    assert cfg.server.port == 7880


def test_bad_env_port_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="VISIO_PORT"):
        load_config(env={"VISIO_SECRET": STRONG, "VISIO_PORT": "http"})
    with pytest.raises(ConfigError, match=r"server\.port.*VISIO_PORT"):
        load_config(env={"VISIO_SECRET": STRONG, "VISIO_PORT": "99999"})


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_SECRET", STRONG)
    monkeypatch.setenv("VISIO_PORT", "7999")
    cfg = load_config()
    assert cfg.server.port == 7999
    assert cfg.auth.secret == STRONG


def test_overrides_beat_env_and_none_is_skipped() -> None:
    cfg = load_config(
        env={"VISIO_SECRET": STRONG, "VISIO_PORT": "8000"},
        overrides={"server.port": 9000, "server.host": None, "room.max_participants": 3},
    )
    assert cfg.server.port == 9000
    assert cfg.server.host == "127.0.0.1"
    assert cfg.room.max_participants == 3


# ---- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "secret",
        "changeme",
        "CHANGEME",
        "change-me",
        "devkey",
        "password",
        SAMPLE_SECRET_PLACEHOLDER,
        "change-me-to-something-long-and-random-1234567890",
        "0123456789abcdef0123456789abcdef",
    ],
)
def test_well_known_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"VISIO_SECRET": secret})
    message = str(info.value)
    assert "well-known" in message
    assert "VISIO_SECRET" in message
    if secret != "secret":  # the word itself is in the explanation
        assert secret not in message


@pytest.mark.parametrize("secret", ["Xq9", "k" * 5 + "Zr8v-Xw1LmN0pT5sYb7uC2e", "é" * 15])
def test_short_secrets_are_refused(secret: str) -> None:
    assert len(secret.encode()) < 32
    with pytest.raises(ConfigError) as info:
        load_config(env={"VISIO_SECRET": secret})
    message = str(info.value)
    assert "32" in message and "VISIO_SECRET" in message
    assert secret not in message


def test_multibyte_secret_counts_bytes() -> None:
    # 22 characters, 33 bytes, all different and in no pattern (issue 6: patterns are refused)
    secret = "é3Qüß9kÅ7øZñ2Ðwæ5Rþ8çĦ"
    assert len(secret) < 32 <= len(secret.encode())
    assert load_config(env={"VISIO_SECRET": secret}).auth.secret == secret


def test_repetitive_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="repetitive"):
        load_config(env={"VISIO_SECRET": "ab" * 20})


def test_missing_secret_is_refused_with_instructions() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    message = str(info.value)
    assert "no secret" in message
    assert "VISIO_SECRET" in message and "[auth]" in message and "--dev" in message


def test_secret_from_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, f'[auth]\nsecret = "{STRONG}"\n', env={})
    assert cfg.auth.secret == STRONG


def test_secret_not_in_repr() -> None:
    cfg = load_config(env={"VISIO_SECRET": STRONG})
    assert STRONG not in repr(cfg)


# ---- dev mode -------------------------------------------------------------------------------


def test_dev_mode_generates_a_secret() -> None:
    a = load_config(env={}, dev=True)
    b = load_config(env={}, dev=True)
    assert a.server.dev_mode is True
    assert len(a.auth.secret.encode()) >= 32
    assert secret_problem(a.auth.secret) is None
    assert a.auth.secret != b.auth.secret


def test_dev_mode_replaces_a_weak_secret(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(env={"VISIO_SECRET": "changeme"}, dev=True)
    assert cfg.auth.secret != "changeme"
    assert len(cfg.auth.secret.encode()) >= 32
    assert "generated" in caplog.text
    assert "changeme" not in caplog.text


def test_dev_mode_keeps_a_strong_secret() -> None:
    assert load_config(env={"VISIO_SECRET": STRONG}, dev=True).auth.secret == STRONG


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_dev_mode_on_loopback(host: str) -> None:
    cfg = load_config(env={"VISIO_HOST": host}, dev=True)
    assert cfg.server.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_dev_mode_refuses_other_hosts(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, dev=True, overrides={"server.host": host})
    message = str(info.value)
    assert "dev mode" in message and "loopback" in message and "server.host" in message


def test_dev_mode_refuses_a_public_media_bind(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        '[media]\nbind_ip = "0.0.0.0"\nannounce_ip = "203.0.113.1"\n',
        env={},
        dev=True,
    )
    assert "media.bind_ip" in message and "loopback" in message


def test_dev_mode_from_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, "[server]\ndev_mode = true\n", env={})
    assert cfg.server.dev_mode is True
    assert len(cfg.auth.secret) >= 32
    # dev=False on the command line wins over the file: then the missing secret is refused.
    with pytest.raises(ConfigError, match="secret"):
        load(tmp_path, "[server]\ndev_mode = true\n", env={}, dev=False)


# ---- dataclasses and shards -----------------------------------------------------------------


def test_dataclasses_are_frozen_with_the_agreed_defaults() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]
    assert cfg.server == ServerConfig("127.0.0.1", 7880, False)
    assert cfg.media == MediaConfig(0, "127.0.0.1", None, 0, 0)
    assert cfg.auth == AuthConfig("", 3600)
    assert (
        cfg.room.max_participants,
        cfg.room.empty_timeout_seconds,
        cfg.room.reconnect_grace_seconds,
        cfg.room.auto_create,
    ) == (150, 300.0, 20.0, True)
    assert (cfg.signalling.max_message_bytes, cfg.signalling.handshake_timeout_seconds) == (
        65536,
        10.0,
    )
    assert cfg.drain.deadline_seconds == 30.0


def test_effective_shards() -> None:
    assert effective_shards(MediaConfig(shards=3)) == 3
    cores = len(os.sched_getaffinity(0))
    assert effective_shards(MediaConfig(shards=0)) == min(cores, 256)
    assert effective_shards(MediaConfig()) >= 1


# ---- track limits (issue 6: one participant, or the room's history, cutting others off) -----


def test_a_large_room_track_limit_is_accepted_since_it_bounds_no_sdp(tmp_path: Path) -> None:
    # A participant's SDP holds its slots and its own tracks, not the room's tracks.
    cfg = load(tmp_path, "[room]\nmax_tracks_per_room = 5000\n")
    assert cfg.room.max_tracks_per_room == 5000
    assert Config().room.max_tracks_per_room == 1000


def test_slot_defaults() -> None:
    r = Config().room
    assert (r.max_video_slots, r.default_video_slots, r.max_audio_slots, r.default_audio_slots) == (
        25,
        9,
        8,
        3,
    )


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ("[room]\ndefault_video_slots = 26\n", "room.default_video_slots", "max_video_slots"),
        ("[room]\ndefault_audio_slots = 9\n", "room.default_audio_slots", "max_audio_slots"),
        (
            "[room]\nmax_video_slots = 4\n",  # the default 9 is now above the maximum
            "room.default_video_slots",
            "max_video_slots (4)",
        ),
        ("[room]\nmax_video_slots = -1\n", "room.max_video_slots", "0–64"),
        ("[room]\ndefault_video_slots = -1\n", "room.default_video_slots", "0–"),
        ("[room]\nmax_audio_slots = -2\n", "room.max_audio_slots", "0–16"),
        ("[room]\ndefault_audio_slots = -1\n", "room.default_audio_slots", "0–"),
        (
            "[room]\nmax_video_slots = 65\n[signalling]\nmax_message_bytes = 16777216\n",
            "room.max_video_slots",
            "0–64",
        ),
        ("[room]\nmax_audio_slots = 17\n", "room.max_audio_slots", "0–16"),
        ('[room]\nmax_video_slots = "25"\n', "room.max_video_slots", "integer"),
        ("[room]\ndefault_audio_slots = 2.5\n", "room.default_audio_slots", "integer"),
    ],
)
def test_bad_slot_counts_name_the_key(tmp_path: Path, toml: str, key: str, words: str) -> None:
    message = error_of(tmp_path, toml)
    assert f"'{key}'" in message
    assert words in message


def test_slot_counts_whose_sdp_cannot_fit_a_frame_are_refused(tmp_path: Path) -> None:
    # (30 + 8 + 20) m-lines x 1.2 KB + 1 KB > 64 KiB (while 38 slots fit a `slots` frame).
    msg = error_of(tmp_path, "[room]\nmax_video_slots = 30\nmax_tracks_per_participant = 20\n")
    assert "'room.max_video_slots'" in msg
    assert "SDP" in msg
    assert "signalling.max_message_bytes (65536)" in msg
    # Tracks per participant count too: they are lines of the same SDP.
    msg = error_of(tmp_path, "[room]\nmax_tracks_per_participant = 30\n")
    assert "room.max_tracks_per_participant (30)" in msg
    # Raising the frame limit with them is the documented way out.
    cfg = load(
        tmp_path,
        "[room]\nmax_video_slots = 64\nmax_audio_slots = 16\n"
        "[signalling]\nmax_message_bytes = 262144\n",
    )
    assert (cfg.room.max_video_slots, cfg.room.max_audio_slots) == (64, 16)


def test_slot_counts_whose_slots_frame_cannot_fit_a_frame_are_refused(tmp_path: Path) -> None:
    # 36 + 8 = 44 slots: the SDP (48 lines, ~58.6 KB) fits, a full `slots` frame (~74.8 KB)
    # with the longest identities does not.
    msg = error_of(tmp_path, "[room]\nmax_video_slots = 36\n")
    assert "'room.max_video_slots'" in msg
    assert "`slots` frame" in msg


def test_track_limits_must_be_positive_and_ordered(tmp_path: Path) -> None:
    assert "'room.max_tracks_per_participant'" in error_of(
        tmp_path, "[room]\nmax_tracks_per_participant = 0\n"
    )
    assert "at least room.max_tracks_per_participant" in error_of(
        tmp_path, "[room]\nmax_tracks_per_participant = 8\nmax_tracks_per_room = 4\n"
    )
    assert "'room.vanished_timeout_seconds'" in error_of(
        tmp_path, "[room]\nvanished_timeout_seconds = 0\n"
    )


def test_a_frame_limit_that_cannot_hold_a_joined_frame_is_refused(tmp_path: Path) -> None:
    # Two participants with the longest identity and name (12 bytes a character once escaped)
    # and 4 tracks each, the longest room name and request id: about 13 KB.
    no_slots = (
        "[room]\nmax_video_slots = 0\ndefault_video_slots = 0\n"
        "max_audio_slots = 0\ndefault_audio_slots = 0\n"
    )
    msg = error_of(tmp_path, no_slots + "[signalling]\nmax_message_bytes = 12000\n")
    assert "'signalling.max_message_bytes'" in msg
    assert "`joined` frame" in msg
    cfg = load(tmp_path, no_slots + "[signalling]\nmax_message_bytes = 13000\n")
    assert cfg.signalling.max_message_bytes == 13000
