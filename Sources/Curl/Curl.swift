// Curl module
