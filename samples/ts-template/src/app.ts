// A small app to start from: notes kept in a private map, each with an id from
// crypto.randomUUID(), written against @microsoft/ccf-app as for CCF.
import * as ccfapp from "@microsoft/ccf-app";

type Note = { text: string; author: string };

const notes = ccfapp.typedKv("notes", ccfapp.string, ccfapp.json<Note>());
const count = ccfapp.typedKv("public:note_count", ccfapp.string, ccfapp.uint32);

function error(statusCode: number, code: string, message: string): ccfapp.Response {
  return { statusCode, body: { error: { code, message } } };
}

export function addNote(request: ccfapp.Request<{ text: string }>): ccfapp.Response {
  let body: { text?: unknown };
  try {
    body = request.body.json();
  } catch {
    return error(400, "InvalidInput", "the body must be JSON");
  }
  if (typeof body?.text !== "string" || body.text.length === 0) return error(400, "InvalidInput", "text must be a non-empty string");
  const id = crypto.randomUUID();
  const caller = request.caller as { id?: string } | undefined;
  notes.set(id, { text: body.text, author: caller?.id ?? "" });
  count.set("all", (count.get("all") ?? 0) + 1);
  return { statusCode: 201, body: { id } };
}

export function getNote(request: ccfapp.Request): ccfapp.Response {
  const note = notes.get(request.params.id);
  return note ? { body: note } : error(404, "NoteNotFound", `no note ${request.params.id}`);
}

export function countNotes(): ccfapp.Response {
  return { body: { count: count.get("all") ?? 0 } };
}
