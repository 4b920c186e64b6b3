/**
 * The step counter of a run. Every atomic point (an SPTE read a decision depends on, a cmpxchg,
 * a backend call, a lock operation) advances it by one, whether or not the coroutine yields
 * there, so step numbers in a trace mean the same with and without interleaving.
 */
export class Clock {
  step = 0;
}
