export const packageName = '@fairprune/native-cuda';
