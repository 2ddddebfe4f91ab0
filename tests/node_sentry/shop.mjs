// The failing application code both JavaScript reporters share, so their reports can be compared.
function charge(amount) {
  const prices = {};
  return prices[amount].toFixed(2);
}

export function checkout(amount) {
  if (amount > 100) {
    return charge(amount);
  }
  throw new RangeError(`card declined for ${amount}`);
}

export async function run(amount, report) {
  try {
    checkout(amount);
  } catch (err) {
    return await report(err);
  }
  return null;
}
