// Endpoints that show CCF's behaviour where Consort once differed (issue 17).

export function mine() {
  return { body: { mine: true } };
}

export function echo(request) {
  return { body: { route: request.route, path: request.path, params: request.params, method: request.method } };
}
