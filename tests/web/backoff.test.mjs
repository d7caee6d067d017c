// backoff.js: the reconnect delays, with the randomness and the clock in the test's hands.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff } from "../../securechat/server/web/static/backoff.js";

test("the ceiling doubles from 1 s to the 30 s cap; delays stay within floor and ceiling", () => {
  const top = new Backoff({ rand: () => 1 });
  assert.deepEqual(
    Array.from({ length: 7 }, () => top.nextDelay()),
    [1, 2, 4, 8, 16, 30, 30],
  );
  const bottom = new Backoff({ rand: () => 0 });
  assert.deepEqual(
    Array.from({ length: 3 }, () => bottom.nextDelay()),
    [0.5, 0.5, 0.5],
  );
  const huge = new Backoff({ rand: () => 1 });
  huge.attempts = 10_000;
  assert.equal(huge.nextDelay(), 30, "no overflow after many attempts");
});

test("a connection that lasted starts the delays over; a short one does not", () => {
  let now = 0;
  const backoff = new Backoff({ rand: () => 1, clock: () => now });
  backoff.nextDelay();
  backoff.nextDelay();
  backoff.connected();
  now = 3;
  backoff.lost();
  assert.equal(backoff.nextDelay(), 4, "dropped right after login: keeps growing");
  backoff.connected();
  now = 20;
  backoff.lost();
  assert.equal(backoff.nextDelay(), 1);
  backoff.reset();
  assert.equal(backoff.attempts, 0);
});
