// Part 4 of 4: an accepted proposal's actions, applied in order in the transaction that
// accepted it. If one throws, the proposal is Failed and none of its actions' writes are kept.

export function apply(proposal, proposalId) {
  const { actions: list } = JSON.parse(proposal);
  for (const action of list) {
    actions.get(action.name).apply(action.args === undefined ? {} : action.args, proposalId);
  }
}
