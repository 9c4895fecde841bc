export function parseQuery(query) {
  const out = {};
  for (const part of (query || "").split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const k = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
    out[k] = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
  }
  return out;
}

export function notFound(message) {
  return { statusCode: 404, body: { error: { code: "ResourceNotFound", message } } };
}

export function badRequest(message) {
  return { statusCode: 400, body: { error: { code: "InvalidInput", message } } };
}
