/** Awaits a promise that must reject with a RegistryError, and returns that error. */
import { expect } from 'vitest';
import { RegistryError } from '../../src/errors.js';

export async function expectRegistryError(p: Promise<unknown>): Promise<RegistryError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RegistryError);
    return e as RegistryError;
  }
  throw new Error('expected a RegistryError');
}
