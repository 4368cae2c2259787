// tfjs in Node: the wasm backend (the same kernels as the page's fallback).

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { selectTfBackend, type SelectedTfBackend } from '../engine/tf-backend';

let selected: Promise<SelectedTfBackend> | undefined;

export function nodeTf(): Promise<{ tf: typeof tf; selected: SelectedTfBackend }> {
  selected ??= selectTfBackend(tf, ['wasm']);
  return selected.then((s) => ({ tf, selected: s }));
}
