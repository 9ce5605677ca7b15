"""Node agent: runs job ranks, delivers suspend commands, reports heartbeats and health."""

from haiplatform.agent.agent import Agent, AgentConfig
from haiplatform.agent.health import builtin_validator

__all__ = ["Agent", "AgentConfig", "builtin_validator"]
