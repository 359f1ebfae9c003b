"""Backend configuration from flags, environment and a TOML file.

Precedence: the provider comes from the flag, then the file, then is inferred from the environment; the model,
base URL and keys come from the flag, then the environment, then the file. Engine limits: flag, then file.

Environment: ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``MYTHOS_REASON_MODEL``,
``MYTHOS_REASON_CONFIG`` (path of the TOML file; default ``~/.config/mythos/reason.toml``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mythos.reason.backends import LLMBackend

PROVIDERS = ("openai", "anthropic", "scripted")
DEFAULT_MODELS = {"anthropic": "claude-3-5-haiku-latest", "openai": "gpt-4o-mini"}

HOW_TO_CONFIGURE = """\
mythos think: no LLM backend is configured.

Pick one:
  * any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio, OpenAI):
        mythos think --base-url http://127.0.0.1:8080/v1 --model MODEL "your question"
    or  export OPENAI_BASE_URL=http://127.0.0.1:8080/v1 MYTHOS_REASON_MODEL=MODEL
    (for api.openai.com itself: export OPENAI_API_KEY=sk-...)
  * Anthropic:  export ANTHROPIC_API_KEY=...   (or --provider anthropic --model MODEL)
  * a config file, ~/.config/mythos/reason.toml (or --config PATH / MYTHOS_REASON_CONFIG):
        provider = "openai"
        base_url = "http://127.0.0.1:8080/v1"
        model = "MODEL"
  * no model at all, to see the engine's shape: --provider scripted
"""


class NotConfigured(Exception):
    """No backend can be built; the message says how to configure one."""


@dataclass
class BackendSettings:
    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = None
    json_mode: str = "off"  # off | object | schema (response_format for servers that support it)

    def describe(self) -> str:
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.provider}:{self.model}{where}"


def load_config_file(path: str | None) -> dict[str, Any]:
    """Read the TOML config; a missing default file is fine, a missing explicit one is an error."""
    explicit = path or os.environ.get("MYTHOS_REASON_CONFIG")
    candidate = Path(explicit) if explicit else Path.home() / ".config" / "mythos" / "reason.toml"
    if not candidate.exists():
        if explicit:
            raise NotConfigured(f"config file {candidate} does not exist; fix the path or drop --config")
        return {}
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NotConfigured(f"config file {candidate} is not valid TOML: {exc}") from None
    return data.get("reason", data) if isinstance(data.get("reason"), dict) else data


def resolve_settings(
    *,
    provider: str | None,
    base_url: str | None,
    model: str | None,
    file_cfg: dict[str, Any],
    env: dict[str, str] | None = None,
    json_mode: str | None = None,
) -> BackendSettings:
    env = dict(os.environ) if env is None else env
    # the provider: flag, then the config file, then inferred from the environment; the model, URL and keys:
    # flag, then environment, then the file
    provider = provider or file_cfg.get("provider")
    model = model or env.get("MYTHOS_REASON_MODEL") or file_cfg.get("model")
    if provider is None:
        if base_url or env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_KEY") or file_cfg.get("base_url"):
            provider = "openai"
        elif env.get("ANTHROPIC_API_KEY"):
            provider = "anthropic"
        else:
            raise NotConfigured(HOW_TO_CONFIGURE)
    if provider not in PROVIDERS:
        raise NotConfigured(f"provider {provider!r} is not supported; use one of {', '.join(PROVIDERS)}")
    if provider == "scripted":
        return BackendSettings(provider="scripted", model=model or "scripted")
    if provider == "openai":
        base_url = base_url or env.get("OPENAI_BASE_URL") or file_cfg.get("base_url")
        api_key = env.get("OPENAI_API_KEY") or file_cfg.get("api_key")
        if not base_url and not api_key:
            raise NotConfigured(HOW_TO_CONFIGURE)
        if not model:
            if base_url:
                raise NotConfigured(
                    f"no model named for the server at {base_url}: pass --model NAME or set "
                    "MYTHOS_REASON_MODEL (ask the server: curl BASE_URL/models)"
                )
            model = DEFAULT_MODELS["openai"]
        json_mode = json_mode or file_cfg.get("json_mode", "off")
        json_mode = (
            {True: "object", False: "off"}.get(json_mode, json_mode)
            if isinstance(json_mode, bool)
            else json_mode
        )
        if json_mode not in ("off", "object", "schema"):
            raise NotConfigured(f"json_mode={json_mode!r} is invalid: use off, object or schema")
        return BackendSettings(
            provider="openai", model=model, base_url=base_url, api_key=api_key, json_mode=json_mode
        )
    base_url = base_url or file_cfg.get("base_url")
    api_key = env.get("ANTHROPIC_API_KEY") or file_cfg.get("api_key")
    if not api_key and not base_url:
        raise NotConfigured("provider anthropic needs ANTHROPIC_API_KEY (or api_key in the config file)")
    return BackendSettings(
        provider="anthropic",
        model=model or DEFAULT_MODELS["anthropic"],
        base_url=base_url,
        api_key=api_key or "not-needed",
    )


def build_backend(settings: BackendSettings) -> LLMBackend:
    if settings.provider == "scripted":
        from mythos.reason.scripted import ScriptedBackend

        return ScriptedBackend(model=settings.model)
    if settings.provider == "openai":
        from mythos.reason.backends import OpenAIBackend

        return OpenAIBackend(
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            json_mode=settings.json_mode,
        )
    from mythos.reason.backends import AnthropicBackend

    return AnthropicBackend(model=settings.model, api_key=settings.api_key, base_url=settings.base_url)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file + fsync + rename, so a crash never leaves half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
