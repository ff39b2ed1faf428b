"""``bms-agent "question"`` / ``agent.py``: ask a local Ollama model, which calls the BMS-Flux tools over MCP."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .agent.loop import DEFAULT_MODEL

EXIT_OLLAMA = 3


class OllamaUnavailable(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bms-agent",
        description="Ask a question about battery data; a local Ollama model answers by calling the tools of the "
        "five BMS-Flux MCP servers. Needs Ollama running (ollama serve) and a tool-capable model "
        f"(default {DEFAULT_MODEL}: ollama pull {DEFAULT_MODEL}).",
    )
    p.add_argument("question", help='what to ask, e.g. "Simulate a small fleet and tell me which cells will fail"')
    p.add_argument(
        "--model",
        default=os.environ.get("OLLAMA_MODEL") or DEFAULT_MODEL,
        help="Ollama model with tool calling (default $OLLAMA_MODEL or %(default)s; llama3.1:8b works too)",
    )
    p.add_argument(
        "--host",
        default=os.environ.get("OLLAMA_HOST"),
        help="Ollama server (default $OLLAMA_HOST or http://127.0.0.1:11434)",
    )
    p.add_argument("--max-steps", type=int, default=8, help="at most this many model calls (default %(default)s)")
    p.add_argument("--model-timeout", type=float, default=180.0, help="seconds per model call (default %(default)s)")
    p.add_argument("--tool-timeout", type=float, default=300.0, help="seconds per tool call (default %(default)s)")
    p.add_argument("--workspace", help="BMS workspace (default: $BMS_WORKSPACE or ~/.bms-flux/workspace)")
    p.add_argument("--no-stream", action="store_true", help="wait for whole model replies instead of streaming")
    p.add_argument(
        "--base-url",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="an OpenAI-compatible endpoint instead of Ollama, e.g. http://127.0.0.1:8000/v1 (vLLM, "
        "llama.cpp server, LM Studio; default $OPENAI_BASE_URL)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("OPENAI_API_KEY"),
        help="API key for --base-url (default $OPENAI_API_KEY; local servers usually need none)",
    )
    p.add_argument(
        "--num-ctx",
        type=int,
        default=int(os.environ.get("OLLAMA_NUM_CTX") or 8192),
        help="context window to ask Ollama for (num_ctx, default %(default)s tokens)",
    )
    p.add_argument(
        "--tool-budget",
        type=int,
        default=None,
        help="at most this many tokens of tool definitions per model call (default: a quarter of "
        "--num-ctx); only the tools relevant to the question are sent",
    )
    p.add_argument("--all-tools", action="store_true", help="send every tool definition, whatever the question")
    return p


def how_to_start(host: str, model: str, detail: str = "") -> str:
    return (
        f"Ollama is not reachable at {host}{f' ({detail})' if detail else ''}.\n"
        "Start it with:   ollama serve          (install: https://ollama.com/download)\n"
        f"pull a model:    ollama pull {model}\n"
        "or point OLLAMA_HOST (or --host) at a running Ollama server."
    )


async def check_ollama(client: Any, host: str, model: str, timeout: float = 10.0) -> str:
    """Ollama's version, after checking it answers and has ``model``; raises :class:`OllamaUnavailable`."""
    import anyio
    import httpx
    import ollama

    try:
        with anyio.fail_after(timeout):
            listing = await client.list()
            response = await client._client.get("/api/version")  # the client has no version() call
    except (ConnectionError, httpx.HTTPError, OSError, TimeoutError) as exc:
        raise OllamaUnavailable(
            how_to_start(host, model, type(exc).__name__ if not isinstance(exc, ConnectionError) else "")
        ) from None
    except (ollama.ResponseError, ValueError) as exc:  # something answers there, but not Ollama's API
        status = f"HTTP {exc.status_code}" if isinstance(exc, ollama.ResponseError) else "an unexpected reply"
        raise OllamaUnavailable(
            how_to_start(host, model, f"the server there answered {status}, not as Ollama")
        ) from None
    names = {m.model for m in listing.models if m.model}
    wanted = {model, f"{model}:latest"} if ":" not in model else {model}
    if not names & wanted:
        have = ", ".join(sorted(names)) or "none"
        raise OllamaUnavailable(
            f"Ollama at {host} does not have the model '{model}' (it has: {have}).\n"
            f"Pull it with:   ollama pull {model}\nor choose another with --model / OLLAMA_MODEL."
        )
    try:
        return str(response.json().get("version", "?"))
    except ValueError:
        return "?"


def how_to_start_openai(base_url: str, detail: str = "") -> str:
    return (
        f"No OpenAI-compatible API is reachable at {base_url}{f' ({detail})' if detail else ''}.\n"
        "Start one (e.g. vllm serve <model>, llama-server -m <model.gguf> --jinja, LM Studio's server) and pass "
        "its /v1 URL with --base-url, or leave --base-url out to use Ollama."
    )


async def check_openai(client: Any, base_url: str, model: str, timeout: float = 10.0) -> str:
    """The endpoint's model list, after checking it answers as an OpenAI API and serves ``model``."""
    import anyio
    import openai

    try:
        with anyio.fail_after(timeout):
            listing = await client.models.list()
    except openai.APIConnectionError:
        raise OllamaUnavailable(how_to_start_openai(base_url)) from None
    except openai.APIStatusError as exc:
        raise OllamaUnavailable(
            how_to_start_openai(base_url, f"it answered HTTP {exc.status_code}, not as an OpenAI-compatible API")
        ) from None
    except TimeoutError:
        raise OllamaUnavailable(how_to_start_openai(base_url, f"no answer within {timeout:g} s")) from None
    names = [m.id for m in listing.data]
    if names and model not in names:
        raise OllamaUnavailable(
            f"the API at {base_url} does not serve the model '{model}' (it serves: "
            f"{', '.join(names)}).\nChoose one with --model."
        )
    return ", ".join(names) or "?"


def make_backend(args: argparse.Namespace, on_text: Any) -> tuple[Any, Any, str]:
    """(client, chat function, description) for Ollama or the OpenAI-compatible ``--base-url``."""
    from .agent.backends import make_ollama_chat, make_openai_chat

    client: Any  # openai.AsyncOpenAI or ollama.AsyncClient (both imported lazily)
    if args.base_url:
        import openai

        client = openai.AsyncOpenAI(
            base_url=args.base_url, api_key=args.api_key or "not-needed", timeout=args.model_timeout, max_retries=0
        )
        chat = make_openai_chat(client, args.model, args.model_timeout, stream=not args.no_stream, on_text=on_text)
        return client, chat, args.base_url
    import ollama
    from ollama._client import _parse_host

    host = _parse_host(args.host)
    client = ollama.AsyncClient(host=host, timeout=args.model_timeout)
    chat = make_ollama_chat(
        client, args.model, args.model_timeout, stream=not args.no_stream, on_text=on_text, num_ctx=args.num_ctx
    )
    return client, chat, host


async def run_agent(args: argparse.Namespace, console: Any) -> int:
    import httpx
    import ollama
    import openai
    from bms_schema.runs import new_run_id
    from rich.markup import escape

    from .agent.loop import Agent, ToolEvent
    from .agent.tools import build_catalogue, estimate_tokens, select_tools
    from .connections import ServerPool, ToolCallError
    from .servers import default_specs

    streamed: list[str] = []

    def on_text(text: str) -> None:  # the answer as it is written
        streamed.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    client, chat, where = make_backend(args, on_text)
    try:
        if args.base_url:
            served = await check_openai(client, where, args.model)
            console.print(f"[dim]OpenAI-compatible API at {where} (models: {served}), model {args.model}")
        else:
            version = await check_ollama(client, where, args.model)
            console.print(f"[dim]Ollama {version} at {where}, model {args.model}, num_ctx {args.num_ctx}")
    except OllamaUnavailable as exc:
        console.print(f"[red]{escape(str(exc))}")
        return EXIT_OLLAMA
    host = where

    from bms_schema.paths import workspace as default_workspace

    workspace = default_workspace()
    run_id = new_run_id()
    specs = default_specs()
    pool = ServerPool(
        specs,
        env={"BMS_WORKSPACE": str(workspace), "MPLBACKEND": "Agg"},
        log_dir=workspace / "runs" / run_id / "agent" / "servers",
    )
    async with pool:
        pool.start(*specs)
        tools_by_server: dict[str, list[Any]] = {}
        for name in specs:
            try:
                tools_by_server[name] = await pool.list_tools(name)
            except ToolCallError as exc:
                console.print(f"[yellow]without the {name} server's tools: {escape(exc.detail)}")
        if not tools_by_server:
            console.print(
                "[red]no BMS-Flux server could be started; see the logs in "
                f"{workspace / 'runs' / run_id / 'agent' / 'servers'}"
            )
            return 1
        tools, routes = build_catalogue(tools_by_server)
        everything = estimate_tokens(tools)
        if not args.all_tools:
            budget = args.tool_budget or max(args.num_ctx // 4, 512)
            tools = select_tools(tools, routes, args.question, budget)
        console.print(
            f"[dim]{len(tools)} of {len(routes)} tools sent (about {estimate_tokens(tools)} of "
            f"{everything} tokens) from {len(tools_by_server)} servers; run {run_id}"
        )

        def show_call(name: str, arguments: dict[str, Any]) -> None:
            if streamed and not streamed[-1].endswith("\n"):
                sys.stdout.write("\n")
                sys.stdout.flush()
                streamed.append("\n")
            shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())[:120]
            console.print("[cyan]-> " + escape(f"calling {name}({shown}) ..."))

        def show_tool(event: ToolEvent) -> None:
            colour = "green" if event.status == "ok" else "red"
            shown = ", ".join(f"{k}={v!r}" for k, v in event.arguments.items())[:120]
            console.print(
                f"[{colour}]-> "
                + escape(f"{event.name}({shown}) {event.status} in {event.seconds:.1f} s: {event.message[:100]}")
            )

        agent = Agent(
            chat,
            pool,
            tools,
            routes,
            run_id=run_id,
            workspace=str(workspace),
            max_steps=args.max_steps,
            tool_timeout=args.tool_timeout,
            on_tool=show_tool,
            on_call=show_call,
        )
        try:
            answer = await agent.ask(args.question)
        except (TimeoutError, httpx.TimeoutException):
            console.print(f"[red]the model did not answer within {args.model_timeout:g} s (--model-timeout)")
            return 1
        except (ConnectionError, openai.APIConnectionError):
            lost = (
                how_to_start_openai(host, "connection lost")
                if args.base_url
                else how_to_start(host, args.model, "connection lost")
            )
            console.print(f"[red]{escape(lost)}")
            return EXIT_OLLAMA
        except openai.APIStatusError as exc:
            hint = (
                " (serve a model with tool calling, e.g. vLLM --enable-auto-tool-choice)" if "tool" in str(exc) else ""
            )
            console.print(
                f"[red]the API refused the request: {escape(str(exc.message))} (HTTP {exc.status_code}){hint}"
            )
            return 1
        except ollama.ResponseError as exc:
            hint = " (choose a model with tool support, e.g. qwen2.5 or llama3.1)" if "tools" in str(exc) else ""
            console.print(f"[red]Ollama refused the request: {escape(str(exc.error))} (HTTP {exc.status_code}){hint}")
            return 1
    if streamed:  # already written as it arrived
        sys.stdout.write("\n" if not streamed[-1].endswith("\n") else "")
    else:
        sys.stdout.write(answer.text.strip() + "\n")
    sys.stdout.flush()
    if answer.stopped:
        console.print(f"[yellow]{answer.stopped}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    import anyio
    from rich.console import Console

    args = build_parser().parse_args(argv)
    if args.workspace:
        os.environ["BMS_WORKSPACE"] = str(Path(args.workspace).expanduser().resolve())
    if args.max_steps <= 0:
        sys.stderr.write("bms-agent: --max-steps must be positive\n")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True, soft_wrap=True)
    try:
        return anyio.run(run_agent, args, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
