export const packageName = '@fairprune/eval';
