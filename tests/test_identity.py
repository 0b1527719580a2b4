"""agent_lib.identity: the kit's request-identity key pair, made once, readable by its owner only, never shown."""

from __future__ import annotations

import runpy
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent_lib import identity
from agent_lib._paths import REPO_ROOT
from agent_lib._process import pid_path
from agent_lib.agent_process import AgentProcess
from agent_lib.clients import Admin
from agent_lib.identity import IDENTITY_KEYS_ENV


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


def test_deploy_identity_key_is_the_kit_s_own_key_code_and_prints_the_same_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = identity.key_pair(tmp_path)
    deploy = runpy.run_path(str(REPO_ROOT / "deploy" / "identity_key.py"))
    assert deploy["public_key"] is identity.public_key and deploy["new_private_key"] is identity.new_private_key
    assert deploy["main"](["--public", str(pair.private_key_file)]) == 0
    assert capsys.readouterr().out.strip() == pair.public_key
    made = tmp_path / "deploy.pem"
    assert deploy["main"]([str(made)]) == 0
    assert capsys.readouterr().out.strip() == identity.public_key(made) != pair.public_key
    assert deploy["main"]([str(made)]) == 1 and "exists: keep it" in capsys.readouterr().err
    assert deploy["main"](["--public", str(tmp_path / "none.pem")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_rotate_makes_a_new_pair_in_the_same_place(tmp_path: Path) -> None:
    pair = identity.key_pair(tmp_path)
    new = identity.key_pair(tmp_path, rotate=True)
    assert new.private_key_file == pair.private_key_file and new.public_key != pair.public_key
    assert stat.S_IMODE(new.private_key_file.stat().st_mode) == 0o600


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


def test_the_kit_knows_a_server_signs_only_from_the_lab_that_started_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RESTATE_KIT_DATA", str(tmp_path))
    monkeypatch.delenv(identity.SIGNING_ENV, raising=False)
    port = 19070
    assert identity.signing_key(f"http://127.0.0.1:{port}") is None, "a server nobody wrote down does not sign"
    server = subprocess.Popen(["bash", "-c", "exec -a restate-server sleep 60"])
    try:
        pid_path("restate-server", port).parent.mkdir(parents=True, exist_ok=True)
        pid_path("restate-server", port).write_text(str(server.pid))
        env = identity.lab_signs(f"http://127.0.0.1:{port}", server.pid, "publickeyv1_lab")
        assert env == {identity.SIGNING_ENV: f"http://127.0.0.1:{port} publickeyv1_lab"}
        assert identity.signing_key(f"http://localhost:{port}/") == "publickeyv1_lab", "the record, while it runs"
        assert identity.signing_key(f"http://127.0.0.1:{port + 1}") is None, "another server is not the lab's"
        identity.lab_signs(f"http://127.0.0.1:{port}", server.pid + 1, "publickeyv1_lab")
        assert identity.signing_key(f"http://127.0.0.1:{port}") is None, "a record of another process counts for none"
    finally:
        server.kill()
        server.wait()
    monkeypatch.setenv(identity.SIGNING_ENV, "http://127.0.0.1:29070 publickeyv1_env")
    assert identity.signing_key("http://127.0.0.1:29070") == "publickeyv1_env", "a running lab says so in its env"
    assert identity.signing_key("http://127.0.0.1:29071") is None, "a child pointed at another server: not signed"
    assert identity.signing_key("not a url") is None


def test_an_agent_process_trusts_the_lab_s_key_only_behind_the_lab_s_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(identity.SIGNING_ENV, "http://127.0.0.1:29070 publickeyv1_lab")
    monkeypatch.setenv(IDENTITY_KEYS_ENV, "publickeyv1_inherited")
    lesson = AgentProcess("m:a", admin=Admin("http://127.0.0.1:29070"), port=1)
    private = AgentProcess("m:a", admin=Admin("http://127.0.0.1:39070"), port=1)
    by_hand = AgentProcess("m:a", admin=Admin("http://127.0.0.1:39070"), port=1, env={IDENTITY_KEYS_ENV: "k1,k2"})
    opted_out = AgentProcess("m:a", admin=Admin("http://127.0.0.1:29070"), port=1, env={IDENTITY_KEYS_ENV: ""})
    assert lesson.trusted_key == "publickeyv1_lab"
    assert lesson._environment()[IDENTITY_KEYS_ENV] == "publickeyv1_lab"
    assert private.trusted_key is None and IDENTITY_KEYS_ENV not in private._environment(), "nothing inherited"
    assert by_hand._environment()[IDENTITY_KEYS_ENV] == "k1,k2"
    assert opted_out.trusted_key is None and IDENTITY_KEYS_ENV not in opted_out._environment()
