import { describe, expect, it } from 'vitest';
import { backendFromQuery } from './backendChoice';

describe('backend chosen by the page URL', () => {
  it('forces a browser backend named in ?backend=', () => {
    expect(backendFromQuery('?backend=wasm')).toBe('wasm');
    expect(backendFromQuery('?backend=webgpu')).toBe('webgpu');
  });

  it('falls back to auto when absent, unknown, or not a browser backend', () => {
    expect(backendFromQuery('')).toBe('auto');
    expect(backendFromQuery('?backend=webgl')).toBe('auto');
    expect(backendFromQuery('?backend=cpu')).toBe('auto');
  });

  it('takes the backbone backend from ?features=, or none to follow the generator', () => {
    expect(backendFromQuery('?backend=webgpu&features=wasm', 'features')).toBe('wasm');
    expect(backendFromQuery('?backend=webgpu', 'features')).toBeNull();
  });
});
