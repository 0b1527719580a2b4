"""The seed's weather agent over HTTP: answers, journal, memory, and bad input."""

from __future__ import annotations

import pytest

from agent_lib.agents._common import MAX_MESSAGE_CHARS
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.serving import AgentProcess

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too


def test_seed_call_and_journal(ingress: Ingress, admin: Admin, weather: AgentProcess, ledger: Ledger, key: str) -> None:
    sent = ingress.send("WeatherAgent", "run", "What is the weather in New York?", key=key)
    assert ingress.attach(sent.invocation_id) == "The weather in New York is sunny, 72°F"
    assert admin.steps(sent.invocation_id) == ["call LLM", "Get weather", "call LLM", "store session"]
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2


def test_second_turn_remembers(ingress: Ingress, weather: AgentProcess, key: str) -> None:
    ingress.call("WeatherAgent", "run", "What is the weather in Paris?", key=key)
    assert ingress.call("WeatherAgent", "run", "Which city did I ask about?", key=key) == "You asked about Paris."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (42, "must be a JSON string"),
        ({"text": "hi"}, "must be a JSON string"),
        ("", "the message is empty"),
        ("   ", "the message is empty"),
        ("x" * (MAX_MESSAGE_CHARS + 1), f"the limit is {MAX_MESSAGE_CHARS}"),
    ],
)
def test_bad_input_is_a_clear_400_and_leaves_the_session_alone(
    ingress: Ingress, admin: Admin, weather: AgentProcess, key: str, body: object, message: str
) -> None:
    ingress.call("WeatherAgent", "run", "What is the weather in Rome?", key=key)
    before = admin.state("WeatherAgent", key)
    with pytest.raises(RestateError, match=message) as err:
        ingress.call("WeatherAgent", "run", body, key=key)
    assert err.value.status == 400
    assert admin.state("WeatherAgent", key) == before
    assert ingress.call("WeatherAgent", "run", "Which city did I ask about?", key=key) == "You asked about Rome."


def test_malformed_json_is_refused(ingress: Ingress, weather: AgentProcess, key: str) -> None:
    with pytest.raises(RestateError, match="the request body is not valid JSON") as err:
        ingress.call("WeatherAgent", "run", b'{"unterminated', key=key, raw=True)
    assert err.value.status == 400
