// The kernel's variables over the widget's comm, for `@name` in the box. Requests are custom
// messages to the Python `ChatWidget` (`jupyter_llmchat.kernel.namespace` answers them):
//   {kind: "variables", id, prefix}  →  {kind: "variables", id, items, truncated}
//   {kind: "describe", id, names}    →  {kind: "described", id, attachments, attached, skipped}
// A kernel busy running a cell answers when the cell ends; after a timeout the promise is
// rejected and the caller says so instead of waiting.

import { attachmentsFrom } from "./actions";
import type { CommModel } from "./kernel";
import type { VariableList, Variable } from "./mentions";
import { newId, type Attachment } from "./protocol";

export interface Described {
  attachments: Attachment[];
  /** Names that became attachments. */
  attached: string[];
  /** Variables beyond the 8 attachments a question can carry: left as text. */
  skipped: string[];
}

/** Where the box gets the kernel's variables; null where there is no kernel. */
export interface VariableSource {
  list(prefix: string): Promise<VariableList>;
  describe(names: string[]): Promise<Described>;
}

export const LIST_TIMEOUT_MS = 5_000;
export const DESCRIBE_TIMEOUT_MS = 15_000;

export class KernelBusy extends Error {
  constructor() {
    super("the kernel did not answer (is a cell running?)");
  }
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : []);

function variablesFrom(v: unknown): Variable[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter((x): x is Record<string, unknown> => !!x && typeof x === "object" && typeof (x as { name?: unknown }).name === "string")
    .map((x) => ({ name: String(x.name), kind: String(x.kind ?? "object"), label: String(x.label ?? "") }));
}

export class KernelVariables implements VariableSource {
  constructor(
    private readonly model: CommModel,
    private readonly timeouts = { list: LIST_TIMEOUT_MS, describe: DESCRIBE_TIMEOUT_MS },
  ) {}

  async list(prefix: string): Promise<VariableList> {
    const reply = await this.request({ kind: "variables", prefix }, "variables", this.timeouts.list);
    return { items: variablesFrom(reply.items), truncated: reply.truncated === true };
  }

  async describe(names: string[]): Promise<Described> {
    const reply = await this.request({ kind: "describe", names }, "described", this.timeouts.describe);
    return { attachments: attachmentsFrom(reply.attachments) ?? [], attached: strings(reply.attached), skipped: strings(reply.skipped) };
  }

  private request(message: Record<string, unknown>, answer: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const id = newId("v");
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.model.off("msg:custom", onMsg);
      };
      const onMsg = (content: unknown): void => {
        const msg = content as Record<string, unknown> | null;
        if (!msg || typeof msg !== "object" || msg.kind !== answer || msg.id !== id) return;
        done();
        resolve(msg);
      };
      const timer = setTimeout(() => {
        done();
        reject(new KernelBusy());
      }, timeoutMs);
      this.model.on("msg:custom", onMsg);
      try {
        this.model.send({ ...message, id });
      } catch (error) {
        done();
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }
}
