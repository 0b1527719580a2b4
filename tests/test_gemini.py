"""The real model's path, run against the Gemini stub: normal answers, and every fault the stub can play.

Each fault test fails without agent_lib.gemini's policy: without it a 429 is retried every 250 ms (the
lesson retry policy), a bad key is retried 120 times and then paused, and an empty answer is a silent null.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.gemini_stub import FAKE_KEY, FAULTS, GeminiStub, StubControl, StubRequest
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess
from tests.helpers import wait_for, wait_status

WEATHER = "agent_lib.agents.weather:weather_service"
QUESTION = "What is the weather in New York?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateServer]:
    base = tmp_path_factory.mktemp("restate-gemini")
    with RestateServer(base, ingress_port=free_port(), admin_port=free_port(), node_port=free_port()) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub() -> Iterator[GeminiStub]:
    with GeminiStub() as s:
        yield s


@pytest.fixture(scope="module")
def agent(server: RestateServer, stub: GeminiStub) -> Iterator[AgentProcess]:
    from agent_lib.agents import weather  # noqa: F401 - the stub answers by the weather agent's script

    env = {**stub.env(), "AGENT_MODEL_TIMEOUT": "1"}
    with AgentProcess(WEATHER, admin=Admin(server.admin_url), env=env, name="gemini-weather") as proc:
        yield proc


@pytest.fixture
def clients(server: RestateServer, agent: AgentProcess, stub: GeminiStub) -> Iterator[tuple[Admin, Ingress]]:
    Admin(server.admin_url).register(agent.url)
    stub.fault(None)
    yield Admin(server.admin_url), Ingress(server.ingress_url)
    stub.fault(None)


def _key() -> str:
    return f"gemini-{uuid.uuid4().hex[:10]}"


def _generate_since(stub: GeminiStub, since: float) -> list[StubRequest]:
    return [r for r in stub.requests(since) if r.path.endswith(":generateContent")]


def _generations(stub: GeminiStub, since: float, count: int) -> list[float]:
    """Wait (polling, no fixed sleep) until the stub got `count` generations since `since`; return their times."""

    def arrived() -> list[float] | None:
        at = [r.at for r in _generate_since(stub, since)]
        return at[:count] if len(at) >= count else None

    return wait_for(f"{count} model calls", arrived, 60, every=0.05)


def test_a_turn_runs_on_the_gemini_protocol_and_is_journaled(clients: tuple[Admin, Ingress], stub: GeminiStub) -> None:
    admin, ingress = clients
    since = time.time()
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    answer = ingress.attach(sent.invocation_id)
    assert "New York" in answer and "sunny" in answer
    assert answer != "The weather in New York is sunny, 72°F", "the stub phrases its own answers"
    assert admin.steps(sent.invocation_id) == ["call LLM", "Get weather", "call LLM", "store session"]
    calls = _generate_since(stub, since)
    assert [(r.status, r.agent) for r in calls] == [(200, "weather_agent")] * 2, "the signature came back intact"


def test_a_function_call_sent_back_without_its_signature_is_refused(stub: GeminiStub) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": QUESTION}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "New York"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "x"}}}]},
        ],
        "systemInstruction": {"parts": [{"text": 'Your internal name is "weather_agent".'}]},
    }
    url = f"{stub.url}/v1beta/models/gemini-2.5-flash:generateContent"
    refused = httpx.post(url, json=body, headers={"x-goog-api-key": FAKE_KEY})
    assert refused.status_code == 400 and "thought_signature" in refused.json()["error"]["message"]
    body["contents"][1]["parts"][0]["thoughtSignature"] = "c2ln"  # type: ignore[index]
    assert httpx.post(url, json=body, headers={"x-goog-api-key": FAKE_KEY}).status_code == 200


def test_a_quota_429_waits_as_gemini_asks_then_the_turn_completes(
    clients: tuple[Admin, Ingress], stub: GeminiStub
) -> None:
    admin, ingress = clients
    stub.fault("quota", retry_delay=3)
    since = time.time()
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    row = wait_status(admin, sent.invocation_id, "backing-off")
    assert "Gemini quota exhausted (429): next try in 3 s" in str(row["last_failure"])
    assert row["last_failure_related_command_name"] == "call LLM"
    first, second = _generations(stub, since, 2)
    stub.fault(None)
    assert second - first >= 2.9, f"tried again {second - first:.1f} s later: the agent must wait the 3 s Gemini asked"
    assert "New York" in ingress.attach(sent.invocation_id)
    assert admin.steps(sent.invocation_id).count("Get weather") == 1


def test_an_overloaded_model_backs_off_exponentially(clients: tuple[Admin, Ingress], stub: GeminiStub) -> None:
    admin, ingress = clients
    stub.fault("unavailable")
    since = time.time()
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    row = wait_status(admin, sent.invocation_id, "backing-off")
    assert "Gemini is unavailable (503 UNAVAILABLE: The model is overloaded" in str(row["last_failure"])
    at = _generations(stub, since, 3)
    admin.kill(sent.invocation_id)  # its next try is 8 s away; healing is the 500 and quota tests' part
    stub.fault(None)
    gaps = [round(b - a, 1) for a, b in zip(at, at[1:], strict=False)]
    # at least 2 s, then at least 4 s (a loaded machine adds to each), the second about twice the first
    doubling = gaps[0] >= 1.9 and gaps[1] >= 3.9 and 1.5 <= gaps[1] / gaps[0] <= 3
    assert doubling, f"requests {gaps} s apart: expected 2 s, then 4 s"


def test_a_500_heals_and_the_turn_completes(clients: tuple[Admin, Ingress], stub: GeminiStub) -> None:
    admin, ingress = clients
    stub.fault("internal", times=1)
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    row = wait_status(admin, sent.invocation_id, "backing-off")
    assert "Gemini is unavailable (500 INTERNAL: An internal error has occurred" in str(row["last_failure"])
    assert "next try in 2 s" in str(row["last_failure"])
    assert "New York" in ingress.attach(sent.invocation_id)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("bad_key", "Gemini rejected the API key (400 API_KEY_INVALID): check GOOGLE_API_KEY"),
        ("denied", "Gemini refused this key (403 PERMISSION_DENIED"),
        ("no_model", "Gemini has no model 'gemini-2.5-flash' (404): set AGENT_MODEL"),
        ("malformed", "Gemini returned no usable answer (finishReason MALFORMED_FUNCTION_CALL)"),
        ("empty", "Gemini returned no usable answer"),
    ],
)
def test_a_fault_that_will_not_heal_ends_the_turn_at_once(
    clients: tuple[Admin, Ingress], stub: GeminiStub, server: RestateServer, fault: str, message: str
) -> None:
    admin, ingress = clients
    stub.fault(fault)
    since, started = time.time(), time.monotonic()
    with pytest.raises(RestateError) as err:
        ingress.call("WeatherAgent", "run", QUESTION, key=_key())
    assert time.monotonic() - started < 5, "the caller hears at once"
    assert err.value.status == 502 and message in err.value.message
    assert len(_generate_since(stub, since)) == 1, "never retried"
    assert FAKE_KEY not in err.value.message


def test_the_key_never_appears_in_messages_journal_state_or_logs(
    clients: tuple[Admin, Ingress], stub: GeminiStub, agent: AgentProcess
) -> None:
    admin, ingress = clients
    stub.fault("denied")
    with pytest.raises(RestateError) as err:
        ingress.call("WeatherAgent", "run", QUESTION, key=_key())
    assert "<your API key>" in err.value.message, "Gemini's 403 names the key; the agent hides it"
    stub.fault("quota", retry_delay=2)
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    wait_status(admin, sent.invocation_id, "backing-off")
    stub.fault(None)
    ingress.attach(sent.invocation_id)
    tables = ["sys_journal", "sys_invocation", "state", "sys_journal_events"]
    for table in tables:
        rows = admin.query(f"SELECT * FROM {table}")
        assert FAKE_KEY not in json.dumps(rows, default=str), f"the key is in {table}"
    assert FAKE_KEY not in Path(agent.log_path).read_text()


def test_safety_is_a_clear_final_answer_not_a_retry(clients: tuple[Admin, Ingress], stub: GeminiStub) -> None:
    _, ingress = clients
    stub.fault("safety")
    since = time.time()
    answer = ingress.call("WeatherAgent", "run", QUESTION, key=_key())
    assert answer.startswith("Gemini declined to answer this (finishReason SAFETY)")
    assert len(_generate_since(stub, since)) == 1


def test_a_slow_answer_times_out_and_is_tried_again(clients: tuple[Admin, Ingress], stub: GeminiStub) -> None:
    admin, ingress = clients
    stub.fault("slow", times=1, delay=4)
    sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
    row = wait_status(admin, sent.invocation_id, "backing-off")
    assert "Gemini did not answer within 1 s: next try in 2 s" in str(row["last_failure"])
    assert "New York" in ingress.attach(sent.invocation_id)


def test_no_connection_backs_off_until_gemini_is_back(server: RestateServer) -> None:
    from agent_lib.agents import weather  # noqa: F401

    port = free_port()
    env = {"GOOGLE_API_KEY": FAKE_KEY, "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}"}
    admin, ingress = Admin(server.admin_url), Ingress(server.ingress_url)
    with AgentProcess(WEATHER, admin=admin, env=env, name="gemini-refused") as proc:
        admin.register(proc.url)
        sent = ingress.send("WeatherAgent", "run", QUESTION, key=_key())
        row = wait_status(admin, sent.invocation_id, "backing-off")
        assert f"cannot reach Gemini at http://127.0.0.1:{port} (ConnectError" in str(row["last_failure"])
        with GeminiStub(port=port):
            assert "New York" in ingress.attach(sent.invocation_id)


def test_a_stub_in_another_process_is_switched_over_http(stub: GeminiStub) -> None:
    control = StubControl(stub.url)
    control.fault("quota", times=1)
    url = f"{stub.url}/v1beta/models/gemini-2.5-flash"
    assert httpx.get(url, headers={"x-goog-api-key": FAKE_KEY}).status_code == 429
    assert httpx.get(url, headers={"x-goog-api-key": FAKE_KEY}).status_code == 200
    assert [r.status for r in control.requests()][-2:] == [429, 200]
    with pytest.raises(ValueError, match="unknown fault 'quotas'"):
        control.fault("quotas")


@pytest.mark.parametrize(
    ("fault", "model", "state", "says"),
    [
        (None, "gemini-2.5-flash", "valid", "Gemini (gemini-2.5-flash) accepts the key in GOOGLE_API_KEY"),
        ("bad_key", "gemini-2.5-flash", "rejected", "Gemini rejected the API key (400 API_KEY_INVALID)"),
        ("denied", "gemini-2.5-flash", "rejected", "Gemini refused this key (403 PERMISSION_DENIED"),
        (None, "gemni-2.5-flash", "rejected", "Gemini has no model 'gemni-2.5-flash' (404)"),
        ("quota", "gemini-2.5-flash", "quota", "the key in GOOGLE_API_KEY works, but its Gemini quota is exhausted"),
        ("unavailable", "gemini-2.5-flash", "unreachable", "Gemini did not answer (Gemini is unavailable (503"),
    ],
)
def test_doctor_checks_the_key_with_one_cheap_call(
    stub: GeminiStub, monkeypatch: pytest.MonkeyPatch, fault: str | None, model: str, state: str, says: str
) -> None:
    from agent_lib.doctor import run_checks
    from agent_lib.gemini import check_key

    for name, value in stub.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AGENT_MODEL", model)
    stub.fault(fault)
    since = time.time()
    verdict = check_key()
    stub.fault(None)
    assert (verdict.state, verdict.ok) == (state, state == "valid")
    assert says in verdict.detail and FAKE_KEY not in verdict.detail + verdict.fix
    assert [r.method for r in stub.requests(since)] == ["GET"], "one cheap call, not a generation"
    assert verdict.ok or verdict.fix, "a problem comes with its fix"
    if state == "rejected" and "404" in says:
        assert "AGENT_MODEL" in verdict.fix
    stub.fault(fault)
    model_check = next(c for c in run_checks() if c.area == "model")
    stub.fault(None)
    assert model_check.ok == verdict.ok and model_check.detail == f"{state}: {verdict.detail}"


def test_doctor_says_when_gemini_cannot_be_reached_or_no_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_lib.gemini import check_key

    monkeypatch.setenv("GOOGLE_API_KEY", FAKE_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{free_port()}")
    unreachable = check_key(timeout=3)
    assert unreachable.state == "unreachable" and "cannot reach Gemini" in unreachable.detail
    assert "network" in unreachable.fix
    monkeypatch.delenv("GOOGLE_API_KEY")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    offline = check_key()
    assert (offline.state, offline.ok) == ("offline", True) and "offline stand-in model" in offline.detail


def test_the_backoff_starts_over_after_a_model_call_succeeds(stub: GeminiStub, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from google.adk.models.llm_request import LlmRequest
    from google.genai import types
    from restate.exceptions import RetryableError

    from agent_lib.models import CountingGemini

    for name, value in stub.env().items():
        monkeypatch.setenv(name, value)
    import agent_lib.models

    invocation = f"inv_backoff_{uuid.uuid4().hex[:8]}"  # as if inside one invocation, retried
    monkeypatch.setattr(agent_lib.models, "_invocation_id", lambda: invocation)
    model = CountingGemini(model="gemini-2.5-flash", name="backoff_test")
    request = LlmRequest(
        model="gemini-2.5-flash", contents=[types.Content(role="user", parts=[types.Part.from_text(text="hi")])]
    )

    async def once() -> str:
        responses = model.generate_content_async(request)
        try:  # as RestatePlugin does: the first response, then close
            response = await anext(responses)
        except RetryableError as err:
            return err.message
        finally:
            await responses.aclose()
        return str(response.content.parts[0].text if response.content and response.content.parts else "")

    stub.fault("unavailable", times=2)
    first, second = asyncio.run(once()), asyncio.run(once())
    assert first.endswith("next try in 2 s") and second.endswith("next try in 4 s"), (first, second)
    assert "stub" in asyncio.run(once())
    stub.fault("unavailable", times=1)
    assert asyncio.run(once()).endswith("next try in 2 s"), "a success resets the backoff"


def test_google_genai_reads_the_stub_streamed_and_not(stub: GeminiStub) -> None:
    from google.genai import Client, types

    from agent_lib.agents import weather  # noqa: F401

    client = Client(api_key=FAKE_KEY, http_options=types.HttpOptions(base_url=stub.url))
    config = types.GenerateContentConfig(
        system_instruction='You are an agent. Your internal name is "weather_agent".',
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather")])],
    )
    whole = client.models.generate_content(model="gemini-2.5-flash", contents="Weather in Oslo?", config=config)
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="Weather in Oslo?", config=config)
    )
    for answer in (whole, chunks[0]):
        call = answer.candidates[0].content.parts[0]  # type: ignore[index, union-attr]
        assert call.function_call is not None and call.function_call.args == {"city": "Oslo"}
        assert call.thought_signature, "Gemini 2.5 signs its function calls"
        assert answer.response_id and answer.model_version == "gemini-2.5-flash"
        assert answer.usage_metadata is not None and answer.usage_metadata.total_token_count


def test_the_stub_refuses_a_malformed_request_as_gemini_does(stub: GeminiStub) -> None:
    url = f"{stub.url}/v1beta/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": FAKE_KEY, "Content-Type": "application/json"}
    not_json = httpx.post(url, content=b"{nope", headers=headers)
    assert not_json.status_code == 400 and "Invalid JSON payload" in not_json.json()["error"]["message"]
    wrong_shape = httpx.post(url, json={"contents": [{"role": "user", "parts": "text"}]}, headers=headers)
    assert wrong_shape.status_code == 400 and wrong_shape.json()["error"]["status"] == "INVALID_ARGUMENT"
    no_key = httpx.post(url, json={"contents": []})
    assert no_key.status_code == 403 and no_key.json()["error"]["status"] == "PERMISSION_DENIED"
    assert httpx.get(f"{stub.url}/v1beta/nothing", headers=headers).status_code == 404


@pytest.mark.parametrize("key", ['"AIzaSy-pasted-with-quotes"', "AIzaSy pasted with spaces", "AIzaSy-ключ"])
def test_a_badly_pasted_key_is_named_by_the_doctor_and_the_agent(
    stub: GeminiStub, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    import asyncio

    from google.adk.models.llm_request import LlmRequest
    from google.genai import types
    from restate.exceptions import TerminalError

    from agent_lib.gemini import check_key
    from agent_lib.models import CountingGemini

    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", stub.url)
    monkeypatch.setenv("GOOGLE_API_KEY", key)
    verdict = check_key()
    assert verdict.state == "rejected" and "has characters an API key never has" in verdict.detail
    assert "aistudio.google.com/apikey" in verdict.fix and key not in verdict.detail + verdict.fix
    model = CountingGemini(model="gemini-2.5-flash", name="pasted")
    request = LlmRequest(model="gemini-2.5-flash", contents=[types.Content(role="user", parts=[types.Part(text="hi")])])
    with pytest.raises(TerminalError, match="Gemini cannot be asked: the key in GOOGLE_API_KEY has characters"):
        asyncio.run(anext(model.generate_content_async(request)))


def test_each_fault_is_played_from_one_table_and_documented() -> None:
    import agent_lib.gemini_stub as gemini_stub

    documented = {line.split()[0] for line in (gemini_stub.__doc__ or "").splitlines() if line.startswith("    ")}
    assert set(FAULTS) <= documented, f"faults the module's docstring does not describe: {set(FAULTS) - documented}"
    assert FAULTS == tuple(gemini_stub._FAULTS)
