// The query's parameters; a malformed percent escape (`%zz`) throws a BadQuery the handlers
// answer with a 400.
export class BadQuery extends Error {}

function decode(s) {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch (_) {
    throw new BadQuery(`malformed percent-encoding in the query: ${JSON.stringify(s)}`);
  }
}

export function parseQuery(query) {
  const out = {};
  for (const part of (query || "").split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    out[decode(eq < 0 ? part : part.slice(0, eq))] = eq < 0 ? "" : decode(part.slice(eq + 1));
  }
  return out;
}

export function notFound(message) {
  return { statusCode: 404, body: { error: { code: "ResourceNotFound", message } } };
}

export function badRequest(message) {
  return { statusCode: 400, body: { error: { code: "InvalidInput", message } } };
}
