import { describe, expect, it } from "vitest";
import type { StatusInfo } from "../src/connection-state";
import type { RequestInfo } from "../src/outbox";
import { requestState, statusLabel } from "../src/status-lines";

const status = (patch: Partial<StatusInfo>): StatusInfo => ({ status: "live", transport: "websocket", reason: "", retryAt: null, attempt: 0, ...patch });
const request = (patch: Partial<RequestInfo>): RequestInfo => ({
  id: "r1", type: "Generate", phase: "acked", text: "q", messageId: "m1", queuePosition: null, error: null,
  private: false, regenerate: null, newThread: false, ...patch,
});

describe("the status lines", () => {
  it("counts the reconnect down to the next attempt, in whole seconds", () => {
    expect(statusLabel(status({ status: "reconnecting", retryAt: 10_500 }), 8_000)).toBe("reconnecting in 3 s");
    expect(statusLabel(status({ status: "reconnecting", retryAt: 8_000 }), 8_000)).toBe("reconnecting…");
    expect(statusLabel(status({ status: "reconnecting", retryAt: null }))).toBe("reconnecting…");
    expect(statusLabel(status({ status: "via_kernel" }))).toBe("via kernel");
  });

  it("says where a request is: waiting for the connection, queued with its place, generating", () => {
    expect(requestState(request({ phase: "queued" }), false)).toBe("waiting for the connection");
    expect(requestState(request({ phase: "queued" }), true)).toBe("sending…");
    expect(requestState(request({ queuePosition: 2 }), true)).toBe("queued, position 2");
    expect(requestState(request({ queuePosition: 0 }), true)).toBe("starting…");
    expect(requestState(request({}), true)).toBe("generating…");
  });
});
