"""Weak token secrets (issue 6, defect 9).

A secret of 32 bytes or more can still be guessable: a short pattern repeated, a run along the
alphabet or the keyboard, common words with digits. Anyone holding one token can test candidate
keys offline, so such secrets are refused outside dev mode, with a message that says why and
how to make a good one — while real random keys are always accepted.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable

import pytest

from visio_media.config import load_config, secret_problem
from visio_media.errors import ConfigError

PATTERNED = [
    "abcdefgh" * 4,
    "password1234" * 3,
    "Password123" * 3,
    "0123456789" * 4,
    "abcdefghijklmnopqrstuvwxyz123456",
    "zyxwvutsrqponmlkjihgfedcba987654",
    "qwertyuiopasdfghjklzxcvbnm!@#$%^",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,",
    "mysupersecretpassword12345678901",
    "iloveyouiloveyou1234567890123456",
    "P@ssw0rdP@ssw0rd!2024adminadmin1",
    "visio-media-production-secret-2024",
    "letmein-letmein-letmein-letmein!",
    "Xk9#" * 8,
    "secret-key-for-the-jwt-tokens-123",
]


@pytest.mark.parametrize("secret", PATTERNED)
def test_patterned_secret_is_refused_saying_why_and_how(secret: str) -> None:
    assert len(secret.encode()) >= 32
    with pytest.raises(ConfigError) as refused:
        load_config(env={"VISIO_SECRET": secret})
    message = str(refused.value)
    assert "patterned" in message or "repetitive" in message, message
    assert "secrets.token_urlsafe(32)" in message, "says how to make a good one"
    assert secret not in message, "never echoes the secret"


def test_patterned_secret_problem_names_the_pattern() -> None:
    problem = secret_problem("abcdefgh" * 4)
    assert problem is not None and "repeats" in problem and "bits" in problem, problem
    problem = secret_problem("password1234" * 3)
    assert problem is not None and "common words" in problem, problem


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(32),
        lambda: base64.b64encode(os.urandom(32)).decode(),
        lambda: base64.urlsafe_b64encode(os.urandom(24)).decode(),  # exactly 32 characters
        lambda: secrets.token_hex(16),  # 32 hex characters: 128 random bits
    ],
    ids=["token_urlsafe32", "token_hex32", "base64_32_bytes", "urlsafe_b64_24_bytes", "hex16"],
)
def test_random_secrets_are_always_accepted(make: Callable[[], str]) -> None:
    refused = []
    for _ in range(400):
        secret = make()
        if secret_problem(secret) is not None:
            refused.append(secret)
    assert not refused, f"{len(refused)} random secrets refused, e.g. {refused[:3]}"
    # And through the whole loader.
    secret = make()
    assert load_config(env={"VISIO_SECRET": secret}).auth.secret == secret


def test_dev_mode_replaces_a_patterned_secret() -> None:
    cfg = load_config(env={"VISIO_SECRET": "abcdefgh" * 4}, dev=True)
    assert cfg.auth.secret != "abcdefgh" * 4
    assert secret_problem(cfg.auth.secret) is None
