# The finished course agents (agent_lib.agents.FINISHED) in one image: what `python -m agent_lib up` serves on a
# laptop, served here by `python -m agent_lib serve` on port 9080, for a Restate server to call. deploy/README.md
# says how to build, run and register it (compose profile "agents", deploy/k8s/), and what was validated.
#
#   docker build -t durable-agents:local .
FROM python:3.12-slim-trixie

# The lessons' lock, exactly: every wheel checked against its hash, nothing resolved at build time. pip writes the
# bytecode as it installs (compileall does the kit's own modules below): the user the image runs as cannot write
# it, and without it every start compiled google-adk again (2.7x the CPU of a start with .pyc, bench/bytecode.py).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/lab.txt /tmp/lab.txt
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: -r /tmp/lab.txt \
 && rm /tmp/lab.txt

WORKDIR /app
COPY agent_lib ./agent_lib
COPY deploy/register.py ./deploy/register.py
RUN python -m compileall -q agent_lib deploy \
 && useradd --no-log-init --system --uid 10001 --user-group --home-dir /home/agent --create-home agent

USER 10001
# RESTATE_SERVICE_HOST other than loopback makes the agents listen on every interface (agent_lib.serving);
# RESTATE_KIT_DATA is where the ledger and the worker counts go (a writable volume under Kubernetes);
# AGENT_RETRY_POLICY=service: retry through an outage of minutes, as `agent_lib up` does (agents/_common.py).
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    RESTATE_SERVICE_HOST=0.0.0.0 \
    RESTATE_KIT_DATA=/home/agent/data \
    AGENT_RETRY_POLICY=service
EXPOSE 9080
# The SDK answers GET /health before it checks a request's signature, so the probe needs no key.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9080/health', timeout=2)"]
CMD ["python", "-m", "agent_lib", "serve", "--port", "9080", \
     "agent_lib.agents.weather:weather_service", \
     "agent_lib.agents.claims:claims_service", \
     "agent_lib.agents.claims:approvals_service", \
     "agent_lib.agents.specialists:eligibility_service", \
     "agent_lib.agents.specialists:fraud_service", \
     "agent_lib.agents.specialists:policy_service", \
     "agent_lib.agents.triage:triage_service", \
     "agent_lib.agents.orchestration:orchestrator_service", \
     "agent_lib.agents.orchestration:researcher_service", \
     "agent_lib.agents.orchestration:editor_service", \
     "agent_lib.agents.orchestration:publish_workflow", \
     "agent_lib.agents.orchestration:coordinator_service", \
     "agent_lib.agents.orchestration:order_desk", \
     "agent_lib.agents.patterns:desk_service", \
     "agent_lib.agents.patterns:agent_tool_service", \
     "agent_lib.agents.patterns:research_service", \
     "agent_lib.agents.patterns:writer_service", \
     "agent_lib.agents.patterns:review_service", \
     "agent_lib.agents.patterns:pipeline_service", \
     "agent_lib.agents.patterns:loop_service", \
     "agent_lib.agents.patterns:workflow_agents_service"]
