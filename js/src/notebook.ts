// "Insert into a new cell": only where the page exposes JupyterLab's application object.
//
// An anywidget has no handle on the front end's command registry. JupyterLab 4 and Notebook 7
// put their app on `window.jupyterapp` only when started with `expose_app_in_browser`
// (`--LabApp.expose_app_in_browser=True`, `--JupyterNotebookApp.expose_app_in_browser=True`)
// or in dev mode. The kernel route does not work either: IPython's `set_next_input` is an
// execute-reply payload, so called from a comm message it surfaces only after the NEXT cell
// runs (jupyterlab/jupyterlab#8893). So the button shows only where `jupyterapp` is there.

interface CommandsLike {
  execute(id: string, args?: unknown): Promise<unknown>;
  hasCommand(id: string): boolean;
}

interface CellLike {
  node: HTMLElement;
  model: { sharedModel?: { setSource(source: string): void } };
}

interface NotebookLike {
  widgets: readonly CellLike[];
  activeCellIndex: number;
  activeCell: CellLike | null;
}

interface ShellLike {
  currentWidget: unknown;
  widgets?(area?: string): Iterable<unknown>;
}

interface AppLike {
  commands: CommandsLike;
  shell: ShellLike;
}

const INSERT = "notebook:insert-cell-below";

function app(win: Window): AppLike | null {
  const candidate = (win as unknown as { jupyterapp?: AppLike }).jupyterapp;
  if (!candidate?.commands || typeof candidate.commands.hasCommand !== "function") return null;
  return candidate.commands.hasCommand(INSERT) ? candidate : null;
}

function notebookOf(widget: unknown): NotebookLike | null {
  const content = (widget as { content?: Partial<NotebookLike> } | null)?.content;
  return content && Array.isArray(content.widgets) ? (content as NotebookLike) : null;
}

/** Whether this page lets the widget insert cells at all. */
export function canInsertCell(win: Window = window): boolean {
  return app(win) !== null;
}

/** The notebook holding `el` (the widget's output) and its cell's index; else the current notebook's active cell. */
function locate(a: AppLike, el: Element): { notebook: NotebookLike; index: number } | null {
  const panels: unknown[] = [];
  try {
    if (typeof a.shell.widgets === "function") for (const w of a.shell.widgets("main")) panels.push(w);
  } catch {
    // a shell without widgets("main"): only the current widget below
  }
  if (!panels.includes(a.shell.currentWidget)) panels.push(a.shell.currentWidget);
  for (const panel of panels) {
    const notebook = notebookOf(panel);
    const index = notebook ? notebook.widgets.findIndex((cell) => cell.node.contains(el)) : -1;
    if (notebook && index >= 0) return { notebook, index };
  }
  const current = notebookOf(a.shell.currentWidget);
  return current ? { notebook: current, index: current.activeCellIndex } : null;
}

/** Insert `code` as a new code cell below the widget's cell; false where that is not possible. */
export async function insertCellBelow(el: Element, code: string, win: Window = window): Promise<boolean> {
  const a = app(win);
  if (!a) return false;
  const where = locate(a, el);
  if (!where) return false;
  where.notebook.activeCellIndex = where.index;
  await a.commands.execute(INSERT);
  const cell = where.notebook.activeCell;
  if (!cell?.model?.sharedModel) return false;
  cell.model.sharedModel.setSource(code);
  return true;
}
