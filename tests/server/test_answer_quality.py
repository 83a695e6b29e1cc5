"""The answer-quality check, short: six questions in a clean room and in a busy one.

The full check is bench/answers.py (docs/performance.md, "Answer quality"). Here the same
scoring (tests/support/answer_quality.py) runs on six of its questions, with the packaged model at
temperature 0, the default system prompt, examples and repeat penalty. Each answer must
end by itself before the cap, say something, share no run of 8 words with the system
prompt, an example or any earlier message of its room (40 bot broadcasts, another user's
chatter, another user's questions and their answers), and contain the known answer where
there is one. So this fails if the system prompt is echoed, if room messages leak into
an answer, or if answers run to the cap again.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.answer_quality import QUESTIONS, TEST_PROMPTS, Item, prompt_material, score
from support.answer_rooms import Peer, ask_busy, ask_clean
from jupyter_llmchat.engine.primer import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT

MAX_TOKENS = 64
CONFIG = {"max_tokens": MAX_TOKENS, "temperature": 0}


@pytest.fixture
def llmchat_config() -> dict[str, Any]:
    # Ada's 40 REST broadcasts and her questions share one rate-limit bucket. One decode
    # thread: greedy text changes with the thread count, and the adaptive default follows
    # the machine's load (bench/answers.py).
    return {"rate_limit": 0, "n_threads": 1}


@pytest.mark.fast
def test_an_answer_that_repeats_a_sentence_of_the_system_prompt_fails_the_check():
    """Seen in the demo: a short answer, then the default system prompt's last sentence (6 words,
    under the 8-word run that catches longer copies)."""
    material = prompt_material(DEFAULT_SYSTEM_PROMPT, DEFAULT_FEW_SHOT)
    item = Item("A title for a talk about shared local LLMs?")
    echo = "Shared local LLMs: one model for the whole class. The model answers briefly and accurately."
    checks = score(item, echo, "stop", 20, MAX_TOKENS, material)
    assert not checks.no_echo and checks.echo_of == DEFAULT_SYSTEM_PROMPT
    fine = "Shared local LLMs: one model, every notebook. The answers are brief."
    assert score(item, fine, "stop", 20, MAX_TOKENS, material).passed


async def test_answers_pass_the_quality_checks_in_a_clean_and_a_busy_room(chat_server, ws_url, api):
    items = [item for item in QUESTIONS if item.prompt in TEST_PROMPTS]
    assert len(items) == len(TEST_PROMPTS)

    async def broadcast(room: str, content: str, author: str) -> None:
        status, _ = await api("POST", "rooms", room, "messages", body={"content": content, "author_name": author})
        assert status == 201

    ada = await Peer.connect(ws_url, {"Authorization": "token tok-ada"})
    bob = await Peer.connect(ws_url, {"Authorization": "token tok-bob"})
    try:
        clean = await ask_clean(ada, items, CONFIG, "quality-")
        busy = await ask_busy(ada, [bob], broadcast, items, CONFIG, "quality-busy", new_thread=True)
    finally:
        ada.close()
        bob.close()

    assert len(busy[0].room_messages) > 40  # the room really was busy
    material = prompt_material(DEFAULT_SYSTEM_PROMPT, DEFAULT_FEW_SHOT)
    failures = []
    for asked in clean + busy:
        answer = asked.answer
        checks = score(asked.item, answer.text, answer.finish, answer.tokens, MAX_TOKENS, material + asked.room_messages)
        if not checks.passed:
            failures.append((asked.condition, asked.item.prompt, answer.finish, answer.text, checks.echo_of))
    assert not failures
