export const packageName = '@fairprune/core';
