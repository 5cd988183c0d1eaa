// The circuit breaker's state machine, driven by hand with an injected clock:
// no timers, no sockets.
import t from 'tap';
import { CircuitBreaker, type CircuitState } from '../../src/introspection/circuit-breaker.js';

class FakeClock {
  ms = 1_700_000_000_000;
  now(): number {
    return this.ms;
  }
}

function setup(failures = 3, resetTimeout = 10_000) {
  const clock = new FakeClock();
  const changes: CircuitState[] = [];
  const breaker = new CircuitBreaker({ failures, resetTimeout, clock, onStateChange: (state) => changes.push(state) });
  return { clock, breaker, changes };
}

/** Fail `n` ordinary calls in a row. */
function failCalls(breaker: CircuitBreaker, n: number): void {
  for (let i = 0; i < n; i += 1) {
    const permit = breaker.admit();
    if (permit === null) throw new Error(`call ${i + 1} was refused`);
    breaker.failed(permit);
  }
}

t.test('closed: calls go through; it opens after `failures` consecutive failures', async (t) => {
  const { breaker, changes } = setup(3);
  t.equal(breaker.state, 'closed');
  t.equal(breaker.admit(), 'call');
  failCalls(breaker, 2);
  t.equal(breaker.state, 'closed', 'two failures: still closed');
  failCalls(breaker, 1);
  t.equal(breaker.state, 'open', 'the third opens it');
  t.equal(breaker.admit(), null, 'an open circuit refuses calls');
  t.same(changes, ['open']);
});

t.test('a success in between starts the count again', async (t) => {
  const { breaker } = setup(3);
  failCalls(breaker, 2);
  breaker.succeeded(breaker.admit()!);
  failCalls(breaker, 2);
  t.equal(breaker.state, 'closed', 'only two consecutive failures since the success');
  failCalls(breaker, 1);
  t.equal(breaker.state, 'open');
});

t.test('abandoned calls count neither way', async (t) => {
  const { breaker } = setup(2);
  failCalls(breaker, 1);
  for (let i = 0; i < 5; i += 1) breaker.abandoned(breaker.admit()!);
  t.equal(breaker.state, 'closed');
  failCalls(breaker, 1);
  t.equal(breaker.state, 'open', 'the two failures around them are consecutive');
});

t.test('open -> half_open after resetTimeout: exactly one probe; success closes', async (t) => {
  const { breaker, clock, changes } = setup(1, 10_000);
  failCalls(breaker, 1);
  clock.ms += 9_999;
  t.equal(breaker.state, 'open', '1 ms before resetTimeout');
  t.equal(breaker.admit(), null);
  clock.ms += 1;
  t.equal(breaker.state, 'half_open', 'reads half_open once resetTimeout has passed');
  t.equal(breaker.admit(), 'probe', 'the next call is the probe');
  t.equal(breaker.admit(), null, 'a second call while the probe is under way is refused');
  t.equal(breaker.admit(), null);
  breaker.succeeded('probe');
  t.equal(breaker.state, 'closed');
  t.equal(breaker.admit(), 'call');
  t.same(changes, ['open', 'half_open', 'closed']);
});

t.test('a failed probe opens the circuit for another resetTimeout', async (t) => {
  const { breaker, clock, changes } = setup(1, 5_000);
  failCalls(breaker, 1);
  clock.ms += 5_000;
  t.equal(breaker.admit(), 'probe');
  clock.ms += 1_000; // the probe took a second
  breaker.failed('probe');
  t.equal(breaker.state, 'open');
  clock.ms += 4_999;
  t.equal(breaker.admit(), null, 'counted from the failed probe, not from the first opening');
  clock.ms += 1;
  t.equal(breaker.admit(), 'probe');
  breaker.succeeded('probe');
  t.same(changes, ['open', 'half_open', 'open', 'half_open', 'closed']);
});

t.test('an abandoned probe lets the next call probe', async (t) => {
  const { breaker, clock } = setup(1, 1_000);
  failCalls(breaker, 1);
  clock.ms += 1_000;
  t.equal(breaker.admit(), 'probe');
  breaker.abandoned('probe');
  t.equal(breaker.state, 'half_open');
  t.equal(breaker.admit(), 'probe', 'another probe may go');
  breaker.failed('probe');
  t.equal(breaker.state, 'open');
});

t.test('results of calls admitted before the circuit opened do not move it', async (t) => {
  const { breaker, clock } = setup(2, 1_000);
  const early = [breaker.admit()!, breaker.admit()!, breaker.admit()!];
  breaker.failed(early[0]!);
  breaker.failed(early[1]!);
  t.equal(breaker.state, 'open');
  breaker.succeeded(early[2]!);
  t.equal(breaker.state, 'open', 'a late success of an ordinary call does not close it: the probe decides');
  breaker.failed('call');
  clock.ms += 1_000;
  t.equal(breaker.admit(), 'probe', 'nor did a late failure extend it');
  breaker.succeeded('probe');
  breaker.failed('call');
  t.equal(breaker.state, 'closed', 'after closing, counting starts from zero');
});

t.test('failures 0 never opens', async (t) => {
  const { breaker } = setup(0);
  failCalls(breaker, 1000);
  t.equal(breaker.state, 'closed');
});

t.test('the default clock is the wall clock', async (t) => {
  const breaker = new CircuitBreaker({ failures: 1, resetTimeout: 100_000 });
  failCalls(breaker, 1);
  t.equal(breaker.state, 'open');
  t.equal(breaker.admit(), null);
});
