"""agent_lib.identity: the kit's request-identity key pair, made once, readable by its owner only, never shown."""

from __future__ import annotations

import runpy
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent_lib import identity
from agent_lib._paths import REPO_ROOT
from agent_lib.hosting import IDENTITY_KEYS_ENV


def test_the_pair_is_made_once_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    pair = identity.key_pair(tmp_path / "identity")
    again = identity.key_pair(tmp_path / "identity")
    assert pair == again, "the second call uses the key the first one made"
    assert stat.S_IMODE(pair.private_key_file.stat().st_mode) == 0o600
    assert pair.public_key.startswith("publickeyv1_") and len(pair.public_key) > 40


def test_the_default_place_is_the_git_ignored_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path / "kit"))
    assert identity.key_pair().private_key_file == tmp_path / "kit" / "identity" / "restate-identity.pem"
    assert ".restate/" in (REPO_ROOT / ".gitignore").read_text().split(), "the default data dir stays out of git"


def test_the_public_key_is_the_one_deploy_identity_key_derives(tmp_path: Path) -> None:
    pair = identity.key_pair(tmp_path)
    deploy = runpy.run_path(str(REPO_ROOT / "deploy" / "identity_key.py"))
    assert deploy["public_key"](pair.private_key_file.read_bytes()) == pair.public_key


def test_nothing_shows_the_private_key(tmp_path: Path) -> None:
    pair = identity.key_pair(tmp_path)
    secret = pair.private_key_file.read_text().splitlines()[1]
    shown = repr(pair) + str(pair) + str(identity.server_env(pair)) + str(identity.agent_env(pair))
    assert secret not in shown and "BEGIN PRIVATE KEY" not in shown


def test_the_server_signs_with_the_file_and_the_agents_trust_the_public_keys(tmp_path: Path) -> None:
    one, two = identity.key_pair(tmp_path, "one"), identity.key_pair(tmp_path, "two")
    assert identity.server_env(one) == {identity.PRIVATE_KEY_ENV: str(one.private_key_file)}
    assert identity.agent_env(one, two) == {IDENTITY_KEYS_ENV: f"{one.public_key},{two.public_key}"}


def test_a_key_that_is_not_ed25519_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "restate-identity.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError, match="not an Ed25519 private key: delete it"):
        identity.key_pair(tmp_path)
