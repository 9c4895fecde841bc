// Part 2 of 4: is the proposal well formed? Every action must be known and its arguments
// valid; the description names the first problem.

export function validate(input) {
  let proposal;
  try {
    proposal = JSON.parse(input);
  } catch (e) {
    return { valid: false, description: `the proposal is not JSON: ${e.message}` };
  }
  if (proposal === null || typeof proposal !== "object" || !Array.isArray(proposal.actions)) {
    return { valid: false, description: 'a proposal is {"actions": [{"name": ..., "args": {...}}, ...]}' };
  }
  if (proposal.actions.length === 0) return { valid: false, description: "the proposal has no actions" };
  const errors = [];
  proposal.actions.forEach((action, i) => {
    const at = `actions[${i}]`;
    if (action === null || typeof action !== "object" || typeof action.name !== "string") {
      errors.push(`${at} must be {"name": "<action>", "args": {...}}`);
      return;
    }
    const definition = actions.get(action.name);
    if (definition === undefined) {
      errors.push(`${at}: unknown action "${action.name}" (known: ${[...actions.keys()].join(", ")})`);
      return;
    }
    try {
      definition.validate(action.args === undefined ? {} : action.args);
    } catch (e) {
      errors.push(`${at} (${action.name}): ${e.message}`);
    }
  });
  return errors.length === 0 ? { valid: true, description: "OK" } : { valid: false, description: errors.join("; ") };
}
