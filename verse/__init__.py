"""The rules of Chinese verse: text rules, tone and rhyme tables, poetics, the 格律 checker. No torch, no corpus."""
