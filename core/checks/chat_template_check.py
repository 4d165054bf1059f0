"""Compile a `chat_template_jinja` on the login node as transformers compiles it on the node, and keep it small
enough for the train.yaml it is inlined into (the trainer reads train.yaml under the config size limit)."""

from __future__ import annotations

from typing import Any

# The largest chat templates on the Hub are tens of KB; a MiB is a file named by mistake, and four of them would
# push train.yaml over the limit under which the trainer reads it (launcher/config.py MAX_CONFIG_BYTES).
MAX_CHAT_TEMPLATE_BYTES = 1024 * 1024


def _environment() -> Any:
    """transformers' chat template environment (utils/chat_template_utils.py): sandboxed, trim_blocks and
    lstrip_blocks, loop controls, its `{% generation %}` tag and `tojson` filter (a filter is looked up when the
    template compiles, so an unknown one is a compile error; globals such as raise_exception are looked up only
    when it renders)."""
    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body).set_lineno(lineno)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, "jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = lambda value, **kwargs: value
    return env


def chat_template_problem(text: str) -> str | None:
    """Why this template text cannot be used (too large, or not valid Jinja with the line), or None."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CHAT_TEMPLATE_BYTES:
        return (
            f"the template is {size / 2**20:.1f} MiB (at most {MAX_CHAT_TEMPLATE_BYTES // 2**20} MiB: it is copied "
            "into train.yaml); is this the right file?"
        )
    import jinja2

    try:
        _environment().from_string(text)
    except jinja2.TemplateSyntaxError as exc:  # also an unknown filter or test, found when the template compiles
        return f"not a valid Jinja template (line {exc.lineno}: {exc.message}); fix the template"
    except jinja2.TemplateError as exc:
        return f"not a valid Jinja template ({exc}); fix the template"
    except RecursionError:
        return "the template is nested too deeply for Jinja to compile; simplify it"
    return None
