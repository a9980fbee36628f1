# A custom action for streamguard's Colang 2 tests (written for them, not
# NeMo's), run by NeMo's actions server. Its answer's `result` is a string.
from typing import Optional

from nemoguardrails.actions import action


@action(name="GreetVisitorAction")
async def greet_visitor(name: str, context: Optional[dict] = None):
    visits = (context or {}).get("visits")
    return f"Welcome, {name}! Visit number {visits}."
