// How long to wait before each reconnect: doubling, full jitter, capped. The same rule
// as the terminal client's Backoff (securechat/client/console.py).
//
// Why jitter: after a server restart every page reconnects at once; delays drawn at
// random up to a doubling ceiling spread them out. Why a floor: a server that accepts and
// drops at once must not be hit in a tight loop. Why `stable`: growth restarts only after
// a connection that lasted, so a server that drops each client right after login still
// sees the delays grow. `rand` and `clock` are injectable for the tests.

export class Backoff {
  constructor({
    first = 1,
    floor = 0.5,
    cap = 30,
    stable = 10,
    rand = Math.random,
    clock = () => performance.now() / 1000,
  } = {}) {
    Object.assign(this, { first, floor, cap, stable, rand, clock });
    this.attempts = 0;
    this.upSince = null;
  }

  /** The most the delay before attempt `attempt` (0-based) can be, in seconds. */
  ceiling(attempt) {
    return Math.min(this.cap, this.first * 2 ** Math.min(attempt, 64));
  }

  /** The delay before the next attempt, uniform between the floor and the ceiling. */
  nextDelay() {
    const ceiling = this.ceiling(this.attempts);
    this.attempts += 1;
    const low = Math.min(this.floor, ceiling);
    return low + this.rand() * (ceiling - low);
  }

  /** A connection is up (logged in). */
  connected() {
    this.upSince = this.clock();
  }

  /** The connection is gone: start from short delays again if it had lasted. */
  lost() {
    if (this.upSince !== null && this.clock() - this.upSince >= this.stable) {
      this.attempts = 0;
    }
    this.upSince = null;
  }

  /** Start over (the browser says the network is back, or the user asked). */
  reset() {
    this.attempts = 0;
  }
}
