"""openqa"""
