"""REST history pages are bounded in bytes like a Join's page, and paging forward from
`since` still reaches every message, in order, once."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fast

KIB = 1024


@pytest.mark.parametrize("llmchat_config", [{"send_queue_bytes": 2048 * KIB, "message_size_limit": 2048 * KIB, "rate_limit": 0}])
async def test_a_page_of_huge_messages_is_smaller_and_paging_forward_reaches_them_all(chat_server, api, llmchat_config):
    posted = []
    for n in range(6):
        status, reply = await api("POST", "rooms", "huge", "messages", body={"content": f"{n} " + "h" * (400 * KIB)})
        assert status == 201
        posted.append(reply["message_id"])
    seen, since, pages = [], 0, 0
    while True:
        status, page = await api("GET", "rooms", "huge", "messages", since=str(since), limit="500")
        assert status == 200
        if not page["messages"]:
            break
        pages += 1
        assert sum(len(m["data"]["content"]) for m in page["messages"]) <= 1024 * KIB or len(page["messages"]) == 1
        seen += [m["data"]["message_id"] for m in page["messages"]]
        since = page["messages"][-1]["seq"]
    assert seen == posted and pages >= 3
