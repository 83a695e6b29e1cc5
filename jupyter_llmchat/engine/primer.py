"""The default system prompt and example exchanges: what makes a base model answer like a chat."""

from __future__ import annotations

# The shipped model is a 270M *base* model: it was never trained on Gemma's control tokens,
# so `<start_of_turn>`/`<end_of_turn>` between turns mean nothing to it (measured: with one
# marked turn per message, every answer from the third turn on ran to the token cap through
# junk such as "prochains\nで購入"). What it does follow is a conversation written as plain
# "user"/"model" lines after a few example exchanges: it then ends each answer by writing
# the next "user" line, which GemmaFormatter.extra_stops catch. So the GGUF-without-template
# format is Gemma's turn format around ONE user turn holding the system prompt, the examples
# and the conversation as plain lines, then the model's turn (docs/context.md).
DEFAULT_SYSTEM_PROMPT = "A chat between a user and a helpful assistant (the model). The model answers briefly and accurately."
# Variants of both, scored with bench/answers.py: docs/performance.md, "Answer quality".
DEFAULT_FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Hi! Who are you?", "I am a helpful assistant. Ask me anything."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("Write a haiku about autumn.", "Crisp leaves drift and fall,\ngolden light on quiet paths,\nthe year exhales slow."),
    ("How do I reverse a list in Python?", "Use my_list[::-1] for a reversed copy, or my_list.reverse() to reverse it in place."),
)
