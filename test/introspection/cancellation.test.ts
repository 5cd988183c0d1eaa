// Cancellation: the AbortSignal stand-in of the cold path.
import t from 'tap';
import { Cancellation, CANCELLED, DEADLINE_REACHED } from '../../src/introspection/cancellation.js';

t.test('fires once, calls each listener once, with the reason given or CANCELLED', async (t) => {
  const plain = new Cancellation();
  t.equal(plain.aborted, false);
  t.equal(plain.reason, undefined, 'no reason before it fires');
  const heard: string[] = [];
  plain.addEventListener('abort', () => heard.push('a'));
  plain.addEventListener('abort', () => heard.push('b'), { once: true });
  plain.abort();
  plain.abort(DEADLINE_REACHED);
  t.same(heard, ['a', 'b'], 'every listener, once, in order');
  t.equal(plain.aborted, true);
  t.equal(plain.reason, CANCELLED, 'the first abort decides the reason');

  const timed = new Cancellation();
  timed.abort(DEADLINE_REACHED);
  t.equal(timed.reason, DEADLINE_REACHED);
});

t.test('a removed listener is not called; one added after the abort never is', async (t) => {
  const c = new Cancellation();
  let removed = 0;
  let kept = 0;
  const gone = () => (removed += 1);
  c.addEventListener('abort', gone);
  c.addEventListener('abort', () => (kept += 1));
  c.removeEventListener('abort', gone);
  c.removeEventListener('abort', () => {});
  c.abort();
  let late = 0;
  c.addEventListener('abort', () => (late += 1));
  c.abort();
  t.same([removed, kept, late], [0, 1, 0]);
});

t.test('a listener that removes another while the abort runs does not stop the rest', async (t) => {
  const c = new Cancellation();
  const heard: number[] = [];
  const second = () => heard.push(2);
  c.addEventListener('abort', () => {
    heard.push(1);
    c.removeEventListener('abort', second);
  });
  c.addEventListener('abort', second);
  c.abort();
  // The listeners are taken before any runs: all that listened at the abort hear it.
  t.same(heard, [1, 2]);
});

t.test('a listener that throws does not keep the others from hearing the abort', async (t) => {
  const c = new Cancellation();
  let heard = 0;
  c.addEventListener('abort', () => {
    throw new Error('a bug');
  });
  c.addEventListener('abort', () => (heard += 1));
  t.throws(() => c.abort(), /a bug/, 'the failure is not swallowed');
  t.equal(heard, 1, 'the listener after it was called');
  t.equal(c.aborted, true);
});
