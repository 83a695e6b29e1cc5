// Browser tests of running a room (docs/widget.md, Moderation): a teacher and a student on
// one Jupyter server, each a named user (e2e_users.CookieUsers), the teacher a moderator by
// `LLMChat.moderators`. Registered by run.mjs; they use the server of their own they start.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { screenshot, startJupyter, waitFor, writeNotebook } from "./harness.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);

const msg = (page, text) => page.locator(".llmchat-msg", { hasText: text });
const logText = (page) => page.textContent(".llmchat-log");

async function send(page, text) {
  const box = page.locator(".llmchat-input");
  await box.fill(text);
  await box.press("Enter");
}

async function choose(page, text, item) {
  const node = msg(page, text).last();
  await node.locator(".llmchat-menu-button").click();
  await node.locator(".llmchat-menu-item", { hasText: item }).click();
}

export function moderationTests(test, { runId }) {
  let server = null;
  let teacher = null;
  let student = null;
  const room = `e2e-mod-${runId}`;

  async function pages(ctx) {
    if (teacher) return;
    server = await startJupyter({
      extension: true,
      baseUrl: "/user/mod/",
      importPaths: [here],
      extraArgs: ["--ServerApp.identity_provider_class=e2e_users.CookieUsers", "--LLMChat.moderators=teacher"],
    });
    ctx.stopAlso = [...(ctx.stopAlso ?? []), server];
    writeNotebook(server.root, "class.ipynb", [`from jupyter_llmchat import ChatWidget\nChatWidget(room="${room}", ask_mode=False)`]);
    const open = async (user) => {
      const page = await ctx.openOn(server, { name: "class.ipynb", user, downloads: user === "teacher" });
      await page.waitForSelector('.llmchat[data-status="live"]', { timeout: 90_000 });
      return page;
    };
    teacher = await open("teacher");
    student = await open("student");
    await waitFor(async () => (await teacher.getAttribute(".llmchat", "data-moderator")) === "true", { what: "the teacher told they moderate" });
    assert.equal(await student.getAttribute(".llmchat", "data-moderator"), "false");
  }

  test("moderation: the author edits (edited) and deletes own; a moderator's delete leaves every page live", { server: true }, async (ctx) => {
    await pages(ctx);
    await send(student, "hello clas");
    await send(student, "a rude remark");
    await waitFor(async () => (await logText(teacher)).includes("a rude remark"), { what: "the student's messages on the teacher's page" });
    // The student's own message: Edit and Delete; none on someone else's for the student.
    await choose(student, "hello clas", "Edit");
    const box = msg(student, "hello clas").locator(".llmchat-edit-input");
    await box.fill("hello, class");
    await box.press("Enter");
    await waitFor(async () => (await msg(teacher, "hello, class").count()) === 1, { what: "the edit on the teacher's page" });
    assert.equal(await msg(teacher, "hello, class").locator(".llmchat-edited").textContent(), "(edited)");
    // The teacher removes the rude one: gone on the student's page, a system line says who.
    await choose(teacher, "a rude remark", "Delete");
    await waitFor(async () => !(await logText(student)).includes("a rude remark"), { what: "the removal on the student's page" });
    await waitFor(async () => (await logText(student)).includes("Teacher removed a message by Student."), { what: "the system line" });
    await screenshot(student, "moderation-deleted");
    // The student deletes their own message.
    await send(student, "never mind");
    await waitFor(async () => (await msg(student, "never mind").count()) === 1, { what: "own message" });
    await choose(student, "never mind", "Delete");
    await waitFor(async () => !(await logText(teacher)).includes("never mind"), { what: "own delete reaching the teacher" });
    assert.equal(await msg(teacher, "hello, class").locator(".llmchat-menu-item", { hasText: "Edit" }).count(), 0, "no Edit on someone else's");
  });

  test("moderation: a muted student is told until when and cannot post; unmuted, they can", { server: true }, async (ctx) => {
    await pages(ctx);
    await send(student, "spam spam");
    await waitFor(async () => (await msg(teacher, "spam spam").count()) === 1, { what: "the spam on the teacher's page" });
    await choose(teacher, "spam spam", "Mute 10 minutes");
    await waitFor(async () => /You are muted in this room until/.test((await student.textContent(".llmchat-rules")) ?? ""), { what: "the muted line" });
    assert.match(await logText(student), /Teacher muted Student for 10 minutes/);
    await send(student, "let me speak");
    await waitFor(async () => /you are muted in this room until/.test((await student.textContent(".llmchat-notice")) ?? ""), { what: "the refusal" });
    await screenshot(student, "moderation-muted");
    await choose(teacher, "spam spam", "Unmute");
    await waitFor(async () => await student.locator(".llmchat-rules").isHidden(), { what: "the muted line gone" });
    await send(student, "thanks");
    await waitFor(async () => (await msg(teacher, "thanks").count()) === 1, { what: "a post after the unmute" });
  });

  test("moderation: header toggles (answers off, announce-only) reach everyone; Export downloads the transcript", { server: true }, async (ctx) => {
    await pages(ctx);
    assert.ok(await student.locator(".llmchat-mod-toggles").isHidden(), "no toggles for a student");
    const toggle = (label) => teacher.locator(".llmchat-mod-toggle", { hasText: label }).locator("input");
    await toggle("Model answers").click();
    await waitFor(async () => /answers off/.test((await student.textContent(".llmchat-mod-badges")) ?? ""), { what: "the answers-off badge" });
    assert.match((await student.textContent(".llmchat-rules")) ?? "", /The model's answers are off in this room/);
    await send(student, "/ask what is 2 + 2?");
    await waitFor(async () => /answers are off in this room/.test((await student.textContent(".llmchat-notice")) ?? ""), { what: "the refused question" });
    await toggle("Model answers").click();
    await toggle("Announce-only").click();
    await waitFor(async () => /only moderators post here/.test((await student.textContent(".llmchat-rules")) ?? ""), { what: "the announce-only line" });
    await send(student, "may I?");
    await waitFor(async () => /announce-only/.test((await student.textContent(".llmchat-notice")) ?? ""), { what: "the refused post" });
    await send(teacher, "The exam starts now.");
    await waitFor(async () => (await logText(student)).includes("The exam starts now."), { what: "the announcement" });
    await screenshot(student, "moderation-announce-only");
    await toggle("Announce-only").click();

    assert.ok(await student.locator(".llmchat-export").isHidden(), "no Export for a student");
    const [download] = await Promise.all([teacher.waitForEvent("download"), teacher.locator(".llmchat-export").click()]);
    assert.equal(download.suggestedFilename(), `${room}.md`);
    const file = await download.path();
    const md = fs.readFileSync(file, "utf8");
    assert.match(md, new RegExp(`# Room ${room}`));
    assert.ok(md.includes("hello, class") && md.includes("The exam starts now."), md.slice(0, 400));
    assert.ok(!md.includes("a rude remark") && !md.includes("never mind"), "deleted messages are left out");
    assert.match(md, /\*\*Student\*\* \(student\)/);
    await screenshot(teacher, "moderation-teacher");
  });
}
