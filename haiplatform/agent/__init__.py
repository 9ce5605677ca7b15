"""Node agent: runs job ranks, delivers suspend commands, reports heartbeats and health."""

from haiplatform.agent.agent import Agent, AgentConfig, builtin_validator

__all__ = ["Agent", "AgentConfig", "builtin_validator"]
