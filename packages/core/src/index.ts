export const packageName = '@fairprune/core';
export * from './model/folder.js';
export * from './model/tokenizer.js';
export * from './model/dtype.js';
export * from './runtime/session.js';
