// Part 3 of 4: the decision. A proposal is Accepted once more than half of the active members
// voted for it, Rejected once more than half voted against it, and stays Open otherwise.
// Ballots of members who are not (or no longer) active do not count.

function activeMembers() {
  const active = new Set();
  ccf.kv["public:ccf.gov.members.info"].forEach((v, k) => {
    if (ccf.bufToJsonCompatible(v).status === "Active") active.add(ccf.bufToStr(k));
  });
  return active;
}

export function resolve(proposal, proposerId, votes, proposalId) {
  const active = activeMembers();
  const counted = votes.filter((v) => active.has(v.member_id));
  const majority = Math.floor(active.size / 2) + 1;
  if (counted.filter((v) => v.vote === true).length >= majority) return "Accepted";
  if (counted.filter((v) => v.vote !== true).length >= majority) return "Rejected";
  return "Open";
}
