"""The offline model: its rules, its call counting, and the factory's choice of model."""

from __future__ import annotations

import asyncio

import pytest
from google.adk.agents.llm_agent import Agent
from google.adk.runners import InMemoryRunner

from agent_lib.agents.weather import weather_report, weather_script
from agent_lib.ledger import Ledger
from agent_lib.models import (
    Call,
    CountingGemini,
    OfflineModel,
    ToolResult,
    ToolRule,
    Turn,
    default_model,
    model_description,
    uses_gemini,
)


def _turn(text: str, results: tuple[ToolResult, ...] = (), past: tuple[ToolResult, ...] = ()) -> Turn:
    return Turn(text=text, results=results, tools=("get_weather",), history=(), past_results=past)


def test_weather_rules() -> None:
    assert weather_script(_turn("What is the weather in New York?")) == [Call("get_weather", {"city": "New York"})]
    assert weather_script(_turn("weather in Paris and in Rome")) == [
        Call("get_weather", {"city": "Paris"}),
        Call("get_weather", {"city": "Rome"}),
    ]
    assert weather_script(_turn("What's the weather like?")) == "Which city would you like the weather for?"
    result = ToolResult("get_weather", {"result": weather_report("Oslo")})
    assert weather_script(_turn("weather in Oslo", (result,))) == "The weather in Oslo is sunny, 72°F"
    assert weather_script(_turn("Which city did I ask about?", past=(result,))) == "You asked about Oslo."
    assert weather_script(_turn("Which city did I ask about?")) == "You have not asked me about any city yet."


def test_tool_rule_matches_every_occurrence() -> None:
    rule = ToolRule(r"order (?P<order>\d+)", "track")
    assert rule.calls("order 12 and order 34") == [Call("track", {"order": "12"}), Call("track", {"order": "34"})]


async def _weather(tool_city: list[str]) -> None:
    return None


def _run_plain(model: OfflineModel, text: str) -> list[str]:
    async def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather_report(city)

    agent = Agent(model=model, name="weather_agent", instruction="Weather.", tools=[get_weather])
    events = asyncio.run(InMemoryRunner(agent=agent).run_debug(text, quiet=True))
    return [p.text for e in events if e.content for p in e.content.parts or [] if p.text]


def test_offline_model_counts_calls_in_memory_and_in_the_ledger(ledger: Ledger) -> None:
    before = ledger.count("model_call")
    model = OfflineModel(script=weather_script, name="counted")
    texts = _run_plain(model, "What is the weather in Lima?")
    assert texts[-1] == "The weather in Lima is sunny, 72°F"
    assert model.calls == 2
    assert ledger.count("model_call") - before == 2
    assert ledger.effects("model_call")[-1].detail == {"agent": "counted", "model": "offline"}


def test_a_script_asking_for_an_unknown_tool_is_an_error() -> None:
    model = OfflineModel(script=lambda turn: [Call("launch_rocket", {})])
    with pytest.raises(ValueError, match=r"tools the agent does not have: \['launch_rocket'\]"):
        _run_plain(model, "hi")


def test_factory_without_a_key_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    model = default_model(weather_script)
    assert isinstance(model, OfflineModel) and not uses_gemini()
    assert "offline" in model_description()


@pytest.mark.parametrize("var", ["GOOGLE_API_KEY", "GEMINI_API_KEY"])
def test_factory_with_a_key_is_gemini_and_never_shows_it(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv(var, "AIzaFAKE-key-that-must-not-leak")
    monkeypatch.setenv("AGENT_MODEL", "gemini-2.5-pro")
    model = default_model(weather_script)
    assert isinstance(model, CountingGemini) and model.model == "gemini-2.5-pro"
    assert var in model_description() and "AIzaFAKE" not in model_description()
    assert "AIzaFAKE" not in repr(model)
