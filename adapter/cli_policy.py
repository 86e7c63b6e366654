"""`adapter policy`: list the loaded rule packs and explain one rule (citation, fixtures)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from adapter.policy.engine import PolicyEngine
from adapter.policy.rulepack import load_packs
from adapter.settings import PROJECT_ROOT, get_settings

app = typer.Typer(help="Inspect the policy rule packs.")
console = Console()


def _engine() -> PolicyEngine:
    settings = get_settings()
    names = list(dict.fromkeys([*settings.policy_packs, "trust-overrides"]))
    return PolicyEngine(load_packs(settings.profiles_dir / "policy", names))


@app.command("list")
def list_rules() -> None:
    """Every loaded rule with its level, resource type and pack stamp."""
    engine = _engine()
    table = Table("rule", "level", "applies to", "pack", "title")
    for rule in engine.rules():
        table.add_row(rule.id, rule.level, rule.applies_to, rule.pack, rule.title)
    console.print(table)
    console.print("packs: " + ", ".join(engine.stamps()))


@app.command("explain")
def explain(rule_id: str) -> None:
    """A rule's text, citation, check, and the fixtures that show it passing and failing."""
    engine = _engine()
    rule = engine.rule(rule_id)
    if rule is None:
        console.print(f"[red]no rule {rule_id}[/red]")
        raise typer.Exit(code=1)
    console.print(f"[bold]{rule.id}[/bold] {rule.title} ({rule.level}, pack {rule.pack})")
    console.print(
        f"applies to: {rule.applies_to}" + (f" when {rule.guard.expression}" if rule.guard else "")
    )
    console.print(f"check: {rule.expression or rule.check} {dict(rule.params) or ''}")
    console.print(f"message: {rule.message}")
    console.print(f"citation: {rule.citation}\nquote: \u201c{rule.quote}\u201d")
    console.print(f"overridable: {rule.overridable}")
    for pack in engine.packs.values():
        for o in pack.overrides:
            if o.rule == rule.id:
                console.print(f"tuned by {pack.name}: {o.reason}")
    fixtures = Path(PROJECT_ROOT) / "fixtures" / "policy"
    for path in sorted(fixtures.glob("*/*.yaml")):
        if rule.id in path.read_text(encoding="utf-8"):
            console.print(f"fixtures: {path.relative_to(PROJECT_ROOT)}")
