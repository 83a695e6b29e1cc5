// The highlighter must not cost the widget's first paint: it lives in a second bundle.
import path from "node:path";
import * as esbuild from "esbuild";
import { describe, expect, it } from "vitest";

describe("bundles", () => {
  it("keeps highlight.js out of the widget's own bundle (first paint) and in the second one", async () => {
    const build = (entry: string) =>
      esbuild.build({
        entryPoints: [path.join(__dirname, "..", "src", entry)],
        bundle: true,
        format: "esm",
        write: false,
        outdir: "/tmp/llmchat-bundle-test",
        logLevel: "silent",
      });
    const widget = await build("widget.ts");
    const js = widget.outputFiles.find((f) => f.path.endsWith(".js"))!.text;
    expect(js).not.toContain("registerLanguage");
    expect(js).not.toContain("highlightAuto");
    const hl = (await build("highlight-bundle.ts")).outputFiles[0]!.text;
    expect(hl).toContain("registerLanguage");
  });
});
